//! `gracerpc call` against a real `gracerpc serve`: the body as text, from stdin (`-`) or from
//! a file (`@PATH`); the old `--deadline-ms` spelling still works.

#[path = "support/serve.rs"]
mod serve;

use std::io::Write;
use std::process::{Command, Stdio};

use serve::ServeProc;

/// Runs `gracerpc call --nodes ADDR args…` with `stdin`; returns stdout and the exit code.
fn call(node: &ServeProc, args: &[&str], stdin: &[u8]) -> (Vec<u8>, Option<i32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gracerpc"))
        .args(["call", "--nodes", &node.addr.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run gracerpc call");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for gracerpc call");
    (out.stdout, out.status.code())
}

#[test]
fn the_body_comes_from_the_argument_stdin_or_a_file() {
    let node = ServeProc::start("call", &[]);
    assert_eq!(
        call(&node, &["echo", "hello"], b""),
        (b"hello\n".to_vec(), Some(0))
    );
    assert_eq!(
        call(&node, &["echo"], b"ignored"),
        (b"\n".to_vec(), Some(0))
    );
    assert_eq!(
        call(&node, &["echo", "-"], b"from stdin \xff"),
        (b"from stdin \xff\n".to_vec(), Some(0))
    );
    let path = std::env::temp_dir().join(format!("gracerpc-call-body-{}", std::process::id()));
    std::fs::write(&path, b"from a file").expect("write the body file");
    let at = format!("@{}", path.display());
    assert_eq!(
        call(&node, &["echo", &at, "--deadline", "2s"], b""),
        (b"from a file\n".to_vec(), Some(0))
    );
    assert_eq!(
        call(&node, &["echo", &at, "--deadline-ms", "2000"], b""),
        (b"from a file\n".to_vec(), Some(0)),
        "the old spelling is a hidden alias"
    );
    let _ = std::fs::remove_file(&path);
    let (_, code) = call(&node, &["echo", "@/nonexistent/gracerpc-body"], b"");
    assert_eq!(code, Some(2), "a missing body file is a usage error");
}
