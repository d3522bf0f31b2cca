//! The drain budget bounds the whole close sequence — registry withdrawal, answers and linger —
//! and nothing open at its end is cut with an RST (issue 11, finding 7).

#[path = "support/peer.rs"]
mod peer;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gracerpc::server::{Registrar, Request, Server};
use peer::{Gate, OwnedFrame, QUICK, connect_ready, frames, wait_report};

/// Generous for a loaded machine, far below the 2 s linger the old accounting added.
const SLACK: Duration = Duration::from_millis(700);

/// A registry that never confirms the withdrawal (within the test).
struct Hanging;

impl Registrar for Hanging {
    fn register(&mut self, _: SocketAddr) -> io::Result<()> {
        Ok(())
    }

    fn deregister(&mut self) -> io::Result<()> {
        std::thread::sleep(Duration::from_secs(3));
        Ok(())
    }
}

#[test]
fn withdrawal_answers_and_linger_all_fit_in_the_budget() {
    const BUDGET: Duration = Duration::from_secs(1);
    let gate = Gate::new();
    // Default linger (2 s) and registry timeout (500 ms): both longer than their share.
    let server = Server::builder()
        .workers(2)
        .drain_budget(BUDGET)
        .registrar(Hanging)
        .handler("hang", gate.handler())
        .spawn()
        .expect("spawn");
    // A caller whose handler hangs and who never closes: the server waits for it to the end.
    let mut p = connect_ready(server.local_addr());
    p.send_request(1, "hang", b"forever");
    gate.wait_started(b"forever", QUICK);

    let t0 = Instant::now();
    server.shutdown();
    let goaway = p.expect_matching(QUICK, "GOAWAY", |f| matches!(f, OwnedFrame::GoAway { .. }));
    let goaway_at = t0.elapsed();
    let OwnedFrame::GoAway {
        drain_budget_ms, ..
    } = goaway
    else {
        unreachable!()
    };
    // Withdrawal ≤ B/4 = 250 ms; GOAWAY announces what is left less the linger (B/4 = 250 ms).
    assert!(
        goaway_at >= Duration::from_millis(200) && goaway_at < Duration::from_millis(250) + SLACK,
        "GOAWAY after {goaway_at:?}: the withdrawal waits at most a quarter of the budget"
    );
    assert!(
        (300..=550).contains(&drain_budget_ms),
        "GOAWAY announces {drain_budget_ms} ms: expected 1 s − withdrawal − 250 ms linger"
    );
    let (report, _server) = wait_report(server, BUDGET + QUICK);
    let total = t0.elapsed();
    assert!(
        total <= BUDGET + SLACK,
        "the close sequence took {total:?}, past its {BUDGET:?} budget"
    );
    assert!(!report.clean, "{report:?}");
    assert!(
        report.total <= BUDGET + Duration::from_millis(50),
        "{report:?}"
    );
    assert_eq!(report.abandoned, 1, "{report:?}");
    drop(gate);
}

/// Writes requests until the server stops reading (its output is over the limit because this
/// caller reads nothing): then input is waiting, unread, in the server's socket.
fn fill_until_paused(stream: &mut TcpStream) -> u64 {
    let body = vec![7u8; 256 * 1024];
    stream.set_nonblocking(true).expect("nonblocking");
    let mut id = 0;
    let mut pending: Vec<u8> = Vec::new();
    let mut blocked_since: Option<Instant> = None;
    let start = Instant::now();
    while start.elapsed() < QUICK {
        if pending.is_empty() {
            id += 1;
            pending = frames::request(id, "echo", &body);
        }
        match stream.write(&pending) {
            Ok(n) => {
                pending.drain(..n);
                blocked_since = None;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let since = *blocked_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(300) {
                    break; // nobody reads any more
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("writing requests: {e}"),
        }
    }
    stream.set_nonblocking(false).expect("blocking");
    id
}

#[test]
fn a_caller_that_reads_nothing_is_closed_at_the_budget_without_a_reset() {
    const BUDGET: Duration = Duration::from_millis(800);
    let server = Server::builder()
        .workers(1)
        .drain_budget(BUDGET)
        .inline_handler("echo", |r: &Request<'_>| Ok(r.body.to_vec()))
        .spawn()
        .expect("spawn");
    let p = connect_ready(server.local_addr());
    let mut stream = p.try_clone_stream();
    let sent = fill_until_paused(&mut stream);
    assert!(
        sent > 8,
        "only {sent} requests fit: the server never pushed back"
    );

    let t0 = Instant::now();
    server.shutdown();
    let (report, _server) = wait_report(server, BUDGET + QUICK);
    assert!(t0.elapsed() <= BUDGET + SLACK, "{report:?}");
    assert!(!report.clean, "{report:?}");

    // Now read everything the server wrote: it must end in a clean EOF, not a reset.
    stream.set_read_timeout(Some(QUICK)).expect("timeout");
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => panic!(
                "after {total} bytes: {e} — the server closed with unread input (an RST), \
                 rule 4"
            ),
        }
    }
    drop(p);
}
