//! A node that goes silent after GOAWAY (host crash, partition, SIGSTOP) over real sockets
//! (issue 11, finding 2): the caller PINGs the draining connection and, on no answer, ends the
//! requests it is owed as OutcomeUnknown promptly — as it does for the same silence before
//! GOAWAY — rather than at their own deadline.

#[path = "support/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant};

use cluster::{RawServer, wait_all_ready};
use gracerpc::client::{CallError, CallOptions};

#[test]
fn silence_after_goaway_ends_the_call_as_unknown_at_the_ping_timeout() {
    // Reads the request, says GOAWAY(its id) with a 5 s budget, then reads on and says
    // nothing more (PINGs included).
    let raw = RawServer::spawn(|_, mut c| {
        let _ = (|| -> std::io::Result<()> {
            c.handshake(Some(100))?;
            let (id, ..) = c.next_request()?;
            c.goaway(id)?;
            // Silent: reads what comes (so nothing is reset) and answers nothing.
            let mut sink = [0u8; 4096];
            while std::io::Read::read(&mut c.stream, &mut sink)? > 0 {}
            Ok(())
        })();
    });
    let client = cluster::client(&[raw.addr], |b| {
        b.ping(Duration::from_millis(200), Duration::from_millis(200))
    });
    wait_all_ready(&client, &[raw.addr]);
    let deadline = Duration::from_secs(30);
    let t0 = Instant::now();
    let r = client.call_with("x", b"y", &CallOptions::new().deadline(deadline));
    let took = t0.elapsed();
    assert_eq!(r.unwrap_err(), CallError::OutcomeUnknown);
    // PING after 200 ms of silence, lost 200 ms later; the announced budget (5 s) would bound
    // it too. Generous for a loaded machine, far below the 30 s deadline.
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[test]
fn a_draining_node_that_never_answers_is_given_up_at_its_budget_plus_margin() {
    // Alive (it answers PING) but never answers the request it accepted: the announced
    // budget (5 s) plus the margin (1 s) bounds the wait, not the call's 30 s deadline.
    let raw = RawServer::spawn(|_, mut c| {
        let _ = (|| -> std::io::Result<()> {
            c.handshake(Some(100))?;
            let (id, ..) = c.next_request()?;
            c.goaway(id)?;
            while c.next().is_ok() {}
            Ok(())
        })();
    });
    let client = cluster::client(&[raw.addr], |b| {
        b.ping(Duration::from_millis(200), Duration::from_secs(2))
    });
    wait_all_ready(&client, &[raw.addr]);
    let t0 = Instant::now();
    let r = client.call_with(
        "x",
        b"y",
        &CallOptions::new().deadline(Duration::from_secs(30)),
    );
    let took = t0.elapsed();
    assert_eq!(r.unwrap_err(), CallError::OutcomeUnknown);
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(12),
        "took {took:?}"
    );
}
