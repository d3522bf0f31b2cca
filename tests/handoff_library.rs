//! The handoff as a library: a service that embeds gracerpc hands its RPC listener and an
//! extra listener of its own (an admin port) to its successor, without the CLI.
#![cfg(target_os = "linux")]

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gracerpc::client::Client;
use gracerpc::handoff::{self, Giver, Named, Timeouts, UpgradeSocket};
use gracerpc::server::{Request, Server};

#[test]
fn an_embedded_server_hands_every_named_listener_to_its_successor() {
    let dir = std::env::temp_dir().join(format!("gracerpc-handoff-lib-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("up.sock");

    let old = Server::builder()
        .inline_handler("who", |_: &Request<'_>| Ok(b"old".to_vec()))
        .spawn()
        .unwrap();
    let addr = old.local_addr();
    let admin = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let admin_handed = Arc::new(AtomicBool::new(false));
    let flag = admin_handed.clone();
    let socket = UpgradeSocket::bind(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600,
        "the upgrade socket is created 0600"
    );
    let giver = Giver::spawn(
        socket,
        vec![
            Box::new(old.control()),
            Box::new(Named::new("admin", admin, move || {
                flag.store(true, Ordering::Release)
            })),
        ],
        Timeouts::default(),
    )
    .unwrap();
    let client = Client::builder().nodes([addr]).build().unwrap();
    assert_eq!(client.call("who", b"").unwrap(), b"old");

    // The successor (here in the same process; normally a new one).
    let mut t = handoff::take_over(&path, Duration::from_secs(10)).unwrap();
    assert_eq!(t.names(), ["rpc", "admin", "upgrade"]);
    let rpc = t.tcp_listener(handoff::RPC, None).unwrap();
    let admin2 = t.tcp_listener("admin", None).unwrap();
    assert_eq!(admin2.local_addr().unwrap(), admin_addr);
    let _next = t.upgrade_socket(&path).unwrap();
    let new = Server::builder()
        .listener(rpc)
        .accept_paused()
        .inline_handler("who", |_: &Request<'_>| Ok(b"new".to_vec()))
        .spawn()
        .unwrap();
    assert_eq!(new.local_addr(), addr);
    // Not committed yet: the old one still answers every call.
    for _ in 0..20 {
        assert_eq!(client.call("who", b"").unwrap(), b"old");
    }
    let control = new.control();
    let old_pid = t
        .commit(Duration::from_secs(5), move || control.start_accepting())
        .unwrap();
    assert_eq!(old_pid, std::process::id());

    let report = old.wait().unwrap();
    assert!(report.clean, "the old server drains cleanly: {report}");
    assert!(giver.handed_off());
    assert_eq!(giver.stop(), Some(std::process::id()));
    assert!(
        admin_handed.load(Ordering::Acquire),
        "the admin owner is told"
    );
    assert!(
        path.exists(),
        "the old side must not unlink a path it handed off"
    );
    // Callers now reach the new server on the same address, with no error.
    let mut answers = Vec::new();
    for _ in 0..50 {
        answers.push(client.call("who", b"").unwrap());
    }
    assert_eq!(answers.last().unwrap(), b"new");
    new.shutdown();
    assert!(new.wait().unwrap().clean);
    let _ = std::fs::remove_dir_all(&dir);
}

/// SO_PEERCRED: a process of another user (here: a thread that dropped to `nobody`, as root)
/// is refused even when the socket file would let it connect; the old server serves on.
#[test]
fn an_upgrader_of_another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED an_upgrader_of_another_user_is_refused: needs root to change uid");
        return;
    }
    let dir = std::env::temp_dir().join(format!("gracerpc-handoff-cred-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("up.sock");
    let server = Server::builder()
        .inline_handler("who", |_: &Request<'_>| Ok(b"old".to_vec()))
        .spawn()
        .unwrap();
    let giver = Giver::spawn(
        UpgradeSocket::bind(&path).unwrap(),
        vec![Box::new(server.control())],
        Timeouts::default(),
    )
    .unwrap();
    // Loosen the file so that only the credential check stands in the way.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let p = path.clone();
    let result = std::thread::spawn(move || {
        // Only this thread changes its credentials (the raw syscall, not glibc's
        // process-wide setresuid).
        // SAFETY: setresuid on the calling thread; it ends right after.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(rc, 0, "setresuid: {}", std::io::Error::last_os_error());
        handoff::take_over(&p, Duration::from_secs(5)).map(|_| ())
    })
    .join()
    .unwrap();
    assert!(
        result.is_err(),
        "an upgrader of another user got the listeners"
    );
    assert!(!giver.handed_off());
    let client = Client::builder()
        .nodes([server.local_addr()])
        .build()
        .unwrap();
    assert_eq!(client.call("who", b"").unwrap(), b"old");
    drop(giver);
    assert!(
        !path.exists(),
        "the owner unlinks its path when it stops serving upgrades"
    );
    server.shutdown();
    server.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
