//! The TLS flags of the CLI: `serve --tls-cert --tls-key --tls-client-ca` answering
//! `call --tls-ca --tls-cert --tls-key`, refusing a caller without a certificate; and
//! `rollout --tls` running the main job over mutual TLS with certificates it makes itself.

#[path = "support/rollout.rs"]
mod rollout;
#[path = "support/tls.rs"]
mod tls;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use rollout::Report;

const BIN: &str = env!("CARGO_BIN_EXE_gracerpc");

/// A `gracerpc serve` child, killed (by its PID) when dropped.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn files(pki: &tls::Pki) -> (PathBuf, [PathBuf; 5]) {
    let d = std::env::temp_dir().join(format!("gracerpc-tls-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("dir");
    let f = [
        d.join("ca.pem"),
        d.join("node.pem"),
        d.join("node-key.pem"),
        d.join("client.pem"),
        d.join("client-key.pem"),
    ];
    for (p, text) in f.iter().zip([
        pki.ca.cert_pem(),
        &pki.node.cert_pem,
        &pki.node.key_pem,
        &pki.client.cert_pem,
        &pki.client.key_pem,
    ]) {
        std::fs::write(p, text).expect("write PEM");
    }
    (d, f)
}

#[test]
fn serve_and_call_over_mutual_tls_from_the_command_line() {
    let pki = tls::pki();
    let (dir, [ca, cert, key, ccert, ckey]) = files(&pki);
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--tls-client-ca")
        .arg(&ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let out = child.stdout.take().expect("stdout");
    let node = Node(child);
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("ready line");
    let addr = line
        .trim()
        .strip_prefix("ready ")
        .expect("ready <addr>")
        .to_owned();

    let ok = Command::new(BIN)
        .args(["call", "--nodes", &addr, "--tls-ca"])
        .arg(&ca)
        .arg("--tls-cert")
        .arg(&ccert)
        .arg("--tls-key")
        .arg(&ckey)
        .args(["echo", "hello over mTLS"])
        .output()
        .expect("call");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "hello over mTLS"
    );

    let refused = Command::new(BIN)
        .args(["call", "--nodes", &addr, "--deadline", "1s", "--tls-ca"])
        .arg(&ca)
        .args(["echo", "no certificate"])
        .output()
        .expect("call");
    assert!(
        !refused.status.success(),
        "a caller without a certificate got through"
    );
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("requires a client certificate"), "{err}");

    // Rotation without a restart: new files from a new CA, then SIGUSR1.
    let next = tls::pki();
    std::fs::write(&ca, next.ca.cert_pem()).expect("ca");
    std::fs::write(&cert, &next.node.cert_pem).expect("cert");
    std::fs::write(&key, &next.node.key_pem).expect("key");
    std::fs::write(&ccert, &next.client.cert_pem).expect("client cert");
    std::fs::write(&ckey, &next.client.key_pem).expect("client key");
    let pid = node.0.id() as libc::pid_t;
    // SAFETY: kill(2) on the child we started and have not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGUSR1) }, 0, "SIGUSR1");
    let call = || {
        Command::new(BIN)
            .args(["call", "--nodes", &addr, "--deadline", "1s", "--tls-ca"])
            .arg(&ca)
            .arg("--tls-cert")
            .arg(&ccert)
            .arg("--tls-key")
            .arg(&ckey)
            .args(["echo", "rotated"])
            .output()
            .expect("call")
    };
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let rotated = loop {
        let out = call();
        if out.status.success() || std::time::Instant::now() > end {
            break out;
        }
    };
    assert!(
        rotated.status.success(),
        "the node did not take the new certificates within 10 s of SIGUSR1: {}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    drop(node);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rollout_over_mutual_tls_loses_fails_and_duplicates_nothing() {
    let (r, code, stderr) = rollout::run_logged(
        "tls",
        &[
            "--tls", "--nodes", "2", "--rounds", "1", "--settle", "300ms",
        ],
        Report::Stdout,
    );
    rollout::assert_clean(&r, code);
    assert!(rollout::field(&r, "sent") >= 500, "{r}");
    assert!(
        stderr.contains("TLS (mutual, throwaway CA)") && stderr.contains("handshakes"),
        "the handshake burst is reported: {stderr}"
    );
}
