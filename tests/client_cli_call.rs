//! `gracerpc call` says why it failed, fast (issue 11): to a closed port, and to a plain TCP
//! server that answers HTTP, it fails well before its deadline and names the cause; its help
//! names `GRACERPC_LOG`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

fn call(addr: &str) -> (std::process::Output, Duration) {
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_gracerpc"))
        .args([
            "call",
            "--nodes",
            addr,
            "--deadline-ms",
            "20000",
            "echo",
            "hi",
        ])
        .output()
        .expect("run gracerpc call");
    (out, t0.elapsed())
}

/// Well under the 20 s deadline, generous for a loaded machine.
const FAST: Duration = Duration::from_secs(10);

#[test]
fn call_to_a_closed_port_fails_fast_and_says_refused() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string(); // released: nothing listens there now
    let (out, took) = call(&addr);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(took < FAST, "took {took:?}: it waited for the deadline");
    assert!(err.contains(&addr) && err.contains("refused"), "{err}");
}

#[test]
fn call_to_an_http_server_fails_fast_and_says_not_gracerpc() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        // Answer each connection as a small HTTP server would, until the test ends.
        for stream in listener.incoming().take(64) {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let (out, took) = call(&addr);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(took < FAST, "took {took:?}: it waited for the deadline");
    assert!(
        err.contains(&addr) && err.contains("not a gracerpc server"),
        "{err}"
    );
    drop(server); // detached: it ends with the test process
}

#[test]
fn call_help_names_the_log_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_gracerpc"))
        .args(["call", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("GRACERPC_LOG"), "{help}");
}
