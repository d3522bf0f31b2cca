//! Many random schedules, each from a seed, checked against the global invariants of the
//! protocol. `SIM_SEED=n` replays one seed; `SIM_SEEDS=n` runs more of them.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use gracerpc::proto::{
    ClientConnConfig, ClientEvent, ConnError, ErrorCode, Outcome, RejectReason, Rejection,
    ServerConnConfig,
};
use support::sim::{Ev, MS, SEC, Sim, SimConfig};
use support::wire::F;

/// splitmix64: small, fast, and enough to pick schedules.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }

    fn limit(&mut self) -> Option<usize> {
        match self.below(3) {
            0 => None,
            1 => Some(1 + self.below(8) as usize),
            _ => Some(1 + self.below(64) as usize),
        }
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len() as u64) as usize])
    }
}

/// Prints the seed of a schedule that fails.
struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("failing schedule: SIM_SEED={}", self.0);
        }
    }
}

fn schedule(seed: u64) {
    let _guard = SeedGuard(seed);
    let mut rng = Rng(seed);
    let mut sim = Sim::with(SimConfig {
        server: Some(ServerConnConfig {
            max_in_flight: 1 + rng.below(6) as usize,
            idle_timeout: rng.ms(200, 5_000),
            ping_timeout: rng.ms(100, 2_000),
            linger: rng.ms(50, 2_000),
            ..ServerConnConfig::default()
        }),
        client: Some(ClientConnConfig {
            ping_interval: rng.ms(200, 5_000),
            ping_timeout: rng.ms(100, 3_000),
            ..ClientConnConfig::default()
        }),
        ready: Some(1 + rng.below(100) as u8),
        ..SimConfig::default()
    });
    sim.c2s.write_limit = rng.limit();
    sim.s2c.write_limit = rng.limit();
    sim.c2s.read_limit = rng.limit();
    sim.s2c.read_limit = rng.limit();

    let mut sent: Vec<u64> = Vec::new();
    let mut cancelled: BTreeSet<u64> = BTreeSet::new();
    sim.app.reject_queued_on_drain = rng.one_in(2);
    let ops = 10 + rng.below(150);
    // The rare events happen once, at a chosen point, so most schedules have time to build up.
    let drain_at = (!rng.one_in(4)).then(|| rng.below(ops));
    let kill_at = rng.one_in(12).then(|| rng.below(ops));
    let half_close_at = rng.one_in(12).then(|| rng.below(ops));
    for op in 0..ops {
        if sim.server_closed() && sim.client_closed() {
            break;
        }
        if Some(op) == drain_at && !sim.server_closed() && !sim.server().is_draining() {
            let budget = rng.ms(20, 3_000);
            sim.start_drain(budget);
        }
        if Some(op) == kill_at && !sim.client_closed() && !sim.server_closed() {
            sim.kill();
        }
        if Some(op) == half_close_at && !sim.client_closed() && !sim.c2s_fin() {
            sim.client_shutdown_write();
        }
        match rng.below(16) {
            0..=4 => {
                let deadline = if rng.one_in(4) {
                    sim.now + rng.ms(0, 300)
                } else {
                    sim.now + 10 * SEC
                };
                if !sim.client_closed()
                    && let Ok(id) = sim.try_send(deadline)
                {
                    sent.push(id);
                }
            }
            5..=7 => {
                let queued: Vec<u64> = sim.app.queued.keys().copied().collect();
                if let Some(id) = rng.pick(&queued) {
                    sim.start(id);
                }
            }
            8 | 9 => {
                let running: Vec<u64> = sim.app.running.iter().copied().collect();
                if let Some(id) = rng.pick(&running) {
                    sim.finish(id);
                }
            }
            10 => {
                let queued: Vec<u64> = sim.app.queued.keys().copied().collect();
                if let Some(id) = rng.pick(&queued) {
                    sim.reject(id, RejectReason::OVERLOADED);
                }
            }
            11 => {
                let d = rng.ms(1, 400);
                sim.run_for(d);
            }
            12 => sim.c2s.hold = rng.one_in(2),
            13 => sim.s2c.hold = rng.one_in(2),
            14 => {
                sim.c2s.write_limit = rng.limit();
                sim.s2c.write_limit = rng.limit();
                sim.c2s.read_limit = rng.limit();
                sim.s2c.read_limit = rng.limit();
            }
            15 => {
                if let Some(id) = rng.pick(&sent)
                    && !sim.client_closed()
                    && sim.cancel(id).is_some()
                {
                    cancelled.insert(id);
                }
            }
            _ => {}
        }
        // Sometimes only one step, so that the next action lands mid-flight.
        if rng.one_in(3) {
            sim.step();
        } else {
            sim.run();
        }
    }

    // Wind down: the socket buffers drain, the server drains, the application finishes its
    // work, and the clock runs until both sides have closed.
    sim.c2s.hold = false;
    sim.s2c.hold = false;
    if !sim.server_closed() && !sim.server().is_draining() {
        let budget = rng.ms(20, 3_000);
        sim.start_drain(budget);
    }
    for round in 0.. {
        assert!(round < 10_000, "never closed\n{}", sim.dump());
        sim.run();
        if rng.one_in(2) {
            sim.start_all();
        }
        let running: Vec<u64> = sim.app.running.iter().copied().collect();
        if let Some(id) = rng.pick(&running) {
            sim.finish(id);
        }
        sim.run();
        if sim.server_closed() && sim.client_closed() {
            break;
        }
        if !sim.advance() {
            panic!("stuck: both sides open, no timer\n{}", sim.dump());
        }
    }
    // The application answers whatever it still holds; the answers are dropped.
    sim.finish_all();
    let queued: Vec<u64> = sim.app.queued.keys().copied().collect();
    for id in queued {
        sim.reject(id, RejectReason::SHUTTING_DOWN);
    }
    sim.run();

    check(&sim, &sent, &cancelled);
    if std::env::var("SIM_STATS").is_ok() {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for o in sim.outcomes().values() {
            let k = format!("{:?}", o[0]);
            let k = k.split(['{', '(']).next().unwrap_or("").to_string();
            *kinds.entry(k).or_default() += 1;
        }
        eprintln!(
            "seed {} sent {} accepted {} t={:?} events {} {:?} reset={} sdw={}",
            _guard.0,
            sent.len(),
            sim.app.accepted.len(),
            sim.elapsed(),
            sim.events().len(),
            kinds,
            sim.saw(&Ev::ServerReset),
            sim.saw(&Ev::ServerShutdownWrite)
        );
    }
}

fn check(sim: &Sim, sent: &[u64], cancelled: &BTreeSet<u64>) {
    let fail = |what: String| -> ! { panic!("{what}\n{}", sim.dump()) };
    let outcomes = sim.outcomes();
    let accepted: BTreeSet<u64> = sim.app.accepted.iter().copied().collect();

    // Rule 1: every id sent resolves exactly once (a cancelled id resolved by the cancel).
    for &id in sent {
        let n = outcomes.get(&id).map_or(0, Vec::len);
        let want = usize::from(!cancelled.contains(&id));
        if n != want {
            fail(format!("id {id} resolved {n} times, want {want}"));
        }
    }
    for id in outcomes.keys() {
        if !sent.contains(id) {
            fail(format!("id {id} resolved but never sent"));
        }
    }
    if accepted.len() != sim.app.accepted.len() {
        fail("the server delivered an id twice".into());
    }
    for (&id, &runs) in &sim.app.started {
        if runs != 1 {
            fail(format!("id {id} ran {runs} times"));
        }
    }
    for (&id, all) in &outcomes {
        let ran = sim.app.started.contains_key(&id);
        match &all[0] {
            Outcome::Completed { body, .. } => {
                if !ran || !sim.app.finished.contains(&id) || *body != id.to_be_bytes() {
                    fail(format!("id {id} Completed but the app did not run it once"));
                }
            }
            Outcome::Rejected(why) => {
                if ran {
                    fail(format!("id {id} Rejected ({why:?}) but the app ran it"));
                }
                if matches!(why, Rejection::GoAway | Rejection::NotSent) && accepted.contains(&id) {
                    fail(format!(
                        "id {id} Rejected ({why:?}) but the app received it"
                    ));
                }
            }
            Outcome::DeadlineExceeded { sent: false } => {
                if accepted.contains(&id) {
                    fail(format!("id {id} timed out unsent but the app received it"));
                }
            }
            Outcome::Refused { .. } => {
                if ran {
                    fail(format!("id {id} Refused but the app ran it"));
                }
            }
            Outcome::DeadlineExceeded { sent: true } | Outcome::Unknown => {}
        }
    }
    // Rule 2: after GOAWAY(N) nothing reaches the app, and nothing above N ever did.
    if let Some(drain_at) = sim.find_drain() {
        let (at, last) = drain_at;
        for (i, e) in sim.events().iter().enumerate() {
            if let Ev::Accepted(id) = e
                && (i > at || *id > last)
            {
                fail(format!("id {id} reached the app after GOAWAY({last})"));
            }
        }
    }
    // The server answers each id at most once.
    let mut answers: BTreeMap<u64, usize> = BTreeMap::new();
    for f in sim.to_client() {
        if let F::Response(id, _) | F::Reject(id, _) = f {
            *answers.entry(id).or_default() += 1;
        }
    }
    if let Some((id, n)) = answers.iter().find(|&(_, &n)| n > 1) {
        fail(format!("id {id} answered {n} times"));
    }
    // Every accepted request left the in-flight count exactly once.
    if sim.finished_answers != accepted.len() {
        fail(format!(
            "take_finished_answers summed to {}, {} requests were accepted",
            sim.finished_answers,
            accepted.len()
        ));
    }
    // Both sides are correct, so neither may accuse the other; only timeouts are allowed (held
    // sockets can delay a PONG or a HELLO past its timer).
    for e in sim.events() {
        let err = match e {
            Ev::ServerErr(err) | Ev::ClientErr(err) => err,
            _ => continue,
        };
        let timeout = matches!(&err, ConnError::Protocol(p) if p.code == ErrorCode::TIMEOUT
            || p.detail == "HELLO did not arrive in time");
        if !timeout && err.sent_code().is_some() {
            fail(format!("a correct peer was accused: {err}"));
        }
    }
    // Rule 1: a hint comes only with the resolution it belongs to, never for a late frame.
    let hints = sim
        .client_events()
        .iter()
        .filter(|e| matches!(e, ClientEvent::NodeHint(_)))
        .count();
    let server_rejects = outcomes
        .values()
        .filter(|o| matches!(o[0], Outcome::Rejected(Rejection::Server(_))))
        .count();
    if hints != server_rejects {
        fail(format!(
            "{hints} NodeHint events for {server_rejects} server rejections"
        ));
    }
    // Rule 3: a caller that read GOAWAY and ended cleanly acknowledged it, unless its writes
    // could not reach the server.
    let clean_end = sim.saw(&Ev::Client(ClientEvent::Closed { error: None }));
    let cut = [
        Ev::Killed,
        Ev::ServerShutdownWrite,
        Ev::ServerReset,
        Ev::ClientShutdownWrite,
    ]
    .iter()
    .any(|e| sim.saw(e));
    if clean_end && !cut && !sim.to_server().iter().any(|f| matches!(f, F::GoAwayAck(_))) {
        fail("the caller ended cleanly after GOAWAY without GOAWAY_ACK".into());
    }
    // The caller reported its end once, last.
    let closed = sim
        .client_events()
        .iter()
        .filter(|e| matches!(e, ClientEvent::Closed { .. }))
        .count();
    if closed != 1 {
        fail(format!("caller reported Closed {closed} times"));
    }
}

fn seeds() -> Vec<u64> {
    if let Some(s) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![s];
    }
    let n = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    (0..n).collect()
}

#[test]
fn random_schedules_keep_every_invariant() {
    for seed in seeds() {
        schedule(seed);
    }
}

#[test]
fn rng_is_deterministic() {
    let mut a = Rng(7);
    let mut b = Rng(7);
    assert_eq!((a.next(), a.next()), (b.next(), b.next()));
    assert!(MS < SEC);
}
