//! systemd socket activation through the real `systemd-socket-activate`: `gracerpc serve`
//! serves on the passed socket (LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES), tells the notify socket
//! READY=1 and MAINPID=, then STOPPING=1 on SIGTERM; a socket of the wrong kind is a clear
//! startup error.
#![cfg(target_os = "linux")]

#[path = "support/serve.rs"]
mod serve;

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use gracerpc::client::Client;
use serve::{ServeProc, TempDir};

const ACTIVATE: &str = "systemd-socket-activate";

/// Whether the activator is installed; on CI its absence is a failure.
fn installed(test: &str) -> bool {
    if Command::new(ACTIVATE).arg("--version").output().is_ok() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: `{ACTIVATE}` missing but CI is set: .ci/run must install `systemd`");
    }
    eprintln!("SKIPPED {test}: `{ACTIVATE}` not installed (apt-get install systemd)");
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Notify messages received within `timeout` until one contains `want`.
fn wait_notify(sock: &UnixDatagram, want: &str, timeout: Duration) -> String {
    let end = Instant::now() + timeout;
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push_str(&msg);
            seen.push('\n');
            if msg.contains(want) {
                return msg;
            }
        }
    }
    panic!("no notify message with {want:?} within {timeout:?}; got:\n{seen}");
}

#[test]
fn serve_runs_on_the_socket_systemd_passes_and_notifies() {
    if !installed("serve_runs_on_the_socket_systemd_passes_and_notifies") {
        return;
    }
    let dir = TempDir::new("sd-activate");
    let notify_path = dir.file("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(ACTIVATE);
    cmd.args(["-l", &listen, "--fdname=rpc", "-E", "NOTIFY_SOCKET"])
        .env("NOTIFY_SOCKET", &notify_path)
        .arg(env!("CARGO_BIN_EXE_gracerpc"))
        // --listen names another port: the passed socket must win.
        .args(["serve", "--listen", "127.0.0.1:0"]);
    // The activator starts the service on the first connection.
    let trigger = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    });
    let mut node = ServeProc::spawn("activated", cmd);
    assert!(trigger.join().unwrap(), "the activator never listened");
    assert_eq!(
        node.addr.port(),
        port,
        "serve must use the activated socket"
    );
    let ready = wait_notify(&notify, "READY=1", Duration::from_secs(10));
    assert!(
        ready.contains(&format!("MAINPID={}", node.pid())),
        "READY carries our MAINPID: {ready:?}"
    );
    let client = Client::builder().nodes([node.addr]).build().unwrap();
    assert_eq!(client.call("echo", b"activated").unwrap(), b"activated");
    assert!(
        node.log()
            .contains("socket activation: serving on fd 3 (rpc)"),
        "{}",
        node.log()
    );
    client.close(Duration::from_secs(1));

    node.signal(libc::SIGTERM);
    wait_notify(&notify, "STOPPING=1", Duration::from_secs(10));
    let st = node.expect_exit(Duration::from_secs(20), "drain after SIGTERM");
    assert!(st.success(), "{st:?}");
}

#[test]
fn a_passed_socket_of_the_wrong_kind_is_a_clear_startup_error() {
    if !installed("a_passed_socket_of_the_wrong_kind_is_a_clear_startup_error") {
        return;
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(ACTIVATE)
        .args(["-d", "-l", &listen])
        .arg(env!("CARGO_BIN_EXE_gracerpc"))
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A datagram starts the service.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() && Instant::now() < end {
        let _ = udp.send_to(b"x", ("127.0.0.1", port));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(waiter.is_finished(), "serve did not exit on a UDP socket");
    let out = waiter.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit 1 (could not start): {stderr}"
    );
    assert!(
        stderr.contains("inherited fd 3 is not a TCP socket"),
        "a clear message: {stderr}"
    );
}
