//! SIGKILL of a `gracerpc serve` node in the middle of load from a `Client` with concurrent
//! callers of idempotent `echo` and `work` (50 ms) and non-idempotent `record` (50 ms, unique
//! tokens, audit files): every call ends within its deadline, as a success or a typed error; the
//! idempotent calls all succeed (elsewhere, when the killed node held them); the non-idempotent
//! ones succeed or say `OutcomeUnknown`; nothing hangs.
//! The audit files then show no token ran twice, every success ran exactly once, and no call
//! said "never ran" about a token that ran.

#[path = "support/serve.rs"]
mod serve;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gracerpc::client::{CallError, CallOptions, Client};
use serve::{ServeProc, TempDir, read_audit};

const NODES: usize = 3;
const ECHO_CALLERS: u64 = 4;
const WORK_CALLERS: u64 = 8;
const RECORD_CALLERS: u64 = 16;
const DEADLINE: Duration = Duration::from_secs(3);
/// How late a call may end past its deadline (scheduling on a busy machine).
const LATE: Duration = Duration::from_millis(500);
/// Calls per caller, at most (the load stops on time; echo callers pause 1 ms between calls).
const MAX_CALLS: u64 = 20_000;

struct Done {
    record: bool,
    token: u64,
    result: Result<std::net::SocketAddr, CallError>,
    took: Duration,
}

#[test]
fn sigkill_mid_load_ends_every_call_typed_and_runs_nothing_twice() {
    let dir = TempDir::new("fault-sigkill");
    let audits: Vec<_> = (0..NODES)
        .map(|i| dir.file(&format!("node-{i}.audit")))
        .collect();
    let mut nodes: Vec<ServeProc> = audits
        .iter()
        .enumerate()
        .map(|(i, a)| {
            ServeProc::start(
                &format!("node {i}"),
                &[
                    "--work-ms",
                    "50",
                    "--workers",
                    "8",
                    "--audit",
                    a.to_str().unwrap(),
                ],
            )
        })
        .collect();
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    let client = Client::builder()
        .nodes(addrs.clone())
        .reconnect_backoff(Duration::from_millis(2), Duration::from_millis(50))
        .build()
        .expect("client");
    for &a in &addrs {
        assert!(client.wait_ready(a, serve::START), "{a} never READY");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = crossbeam_channel::unbounded::<Done>();
    let callers: Vec<_> = (0..ECHO_CALLERS + WORK_CALLERS + RECORD_CALLERS)
        .map(|w| {
            let (client, stop, tx) = (client.clone(), stop.clone(), tx.clone());
            let record = w >= ECHO_CALLERS + WORK_CALLERS;
            let echo = w < ECHO_CALLERS;
            std::thread::spawn(move || {
                let opts = CallOptions::new().deadline(DEADLINE).idempotent(!record);
                let method = match (record, echo) {
                    (true, _) => "record",
                    (false, true) => "echo",
                    (false, false) => "work",
                };
                for seq in 0..MAX_CALLS {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let token = ((w + 1) << 32) | seq;
                    let t0 = Instant::now();
                    let result = client
                        .call_with(method, &token.to_be_bytes(), &opts)
                        .map(|r| {
                            assert_eq!(r.body, token.to_be_bytes(), "echoed token");
                            r.node
                        });
                    let _ = tx.send(Done {
                        record,
                        token,
                        result,
                        took: t0.elapsed(),
                    });
                    if echo {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        })
        .collect();
    drop(tx);

    // Kill node 0 while it holds calls: wait (bounded) until it has several outstanding.
    let victim = client
        .table()
        .find(addrs[0])
        .expect("node 0 in the table")
        .clone();
    let until = Instant::now() + Duration::from_secs(5);
    while victim.outstanding() < 3 {
        assert!(
            Instant::now() < until,
            "node 0 never had 3 calls outstanding: {:?}",
            client.nodes()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(200)); // load on all three before the crash
    let killed_at = Instant::now();
    nodes[0].signal(libc::SIGKILL);
    let st = nodes[0].expect_exit(Duration::from_secs(5), "SIGKILL");
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(libc::SIGKILL), "{st}");
    }
    // The load goes on against the survivors for a while.
    std::thread::sleep(Duration::from_millis(800));
    stop.store(true, Ordering::Release);

    // Nothing hangs: every caller ends within one deadline (its last call) plus slack.
    let mut done = Vec::new();
    let end = Instant::now() + DEADLINE + LATE + Duration::from_secs(2);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(d) => done.push(d),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                panic!("callers still running past the deadline: a call hangs")
            }
        }
    }
    for c in callers {
        c.join().expect("a caller panicked");
    }
    client.close(Duration::from_secs(2));

    // Let the survivors drain, so their audit files are complete.
    for n in nodes.iter_mut().skip(1) {
        n.signal(libc::SIGTERM);
        let st = n.expect_exit(Duration::from_secs(15), "SIGTERM after the load");
        assert_eq!(st.code(), Some(0), "a survivor's drain: {st}");
    }
    let runs = read_audit(&audits);

    let mut unknown = 0;
    let mut after_kill_ok = 0;
    let mut sent_records = HashSet::new();
    for d in &done {
        assert!(
            d.took <= DEADLINE + LATE,
            "a call took {:?}, past its deadline {DEADLINE:?}",
            d.took
        );
        let ran = runs.get(&d.token).copied().unwrap_or(0);
        if !d.record {
            let node = d.result.as_ref().unwrap_or_else(|e| {
                panic!("idempotent call {:#x} must succeed elsewhere: {e}", d.token)
            });
            after_kill_ok += u64::from(*node != addrs[0]);
            continue;
        }
        sent_records.insert(d.token);
        match &d.result {
            Ok(_) => assert_eq!(
                ran, 1,
                "record {:#x} succeeded: it ran {ran} times",
                d.token
            ),
            Err(CallError::OutcomeUnknown) => {
                unknown += 1;
                assert!(ran <= 1, "record {:#x} ran {ran} times", d.token);
            }
            Err(e) => panic!(
                "non-idempotent record {:#x}: expected success or OutcomeUnknown, got {e:?}",
                d.token
            ),
        }
        if d.result.as_ref().is_err_and(|e| !e.may_have_run()) {
            assert_eq!(
                ran, 0,
                "record {:#x} said it never ran, but it ran",
                d.token
            );
        }
    }
    for (token, n) in &runs {
        assert_eq!(*n, 1, "token {token:#x} ran {n} times");
        assert!(
            sent_records.contains(token),
            "token {token:#x} ran but no call sent it"
        );
    }
    let records = done.iter().filter(|d| d.record).count();
    eprintln!(
        "{} calls ({records} record, {} echo or work); {unknown} outcome unknown; {} ran; \
         SIGKILL {:?} before the end; idempotent calls retried elsewhere: {}",
        done.len(),
        done.len() - records,
        runs.len(),
        killed_at.elapsed(),
        client.stats().retried
    );
    assert!(
        unknown >= 1,
        "node 0 was killed holding calls: some `record` must report OutcomeUnknown"
    );
    assert!(after_kill_ok > 0, "the survivors answered nothing");
}
