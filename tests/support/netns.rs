//! Two test hosts joined by a veth pair, each in a network namespace the test creates itself
//! (`ip netns add`), with addresses in a private range that exists only inside them. A test can
//! cut the wire (the link is taken down: packets vanish, no FIN, no RST) and mend it.
//!
//! Sockets belong to the namespace of the thread that creates them, whatever thread uses them
//! later: [`NetPair::enter`] runs a closure on a fresh thread moved into one namespace (with
//! `setns(2)`), so a test can create a listener, a client or a raw peer there and hand it back.
//! Threads spawned from inside the closure (a server's event loop, a client's I/O thread) stay in
//! that namespace and open their later sockets there too. [`NetPair::command`] runs a process in
//! a namespace with `ip netns exec`.
//!
//! Needs root and `ip` (iproute2). Where either is missing, or the kernel refuses,
//! [`NetPair::create`] returns `Err` with the reason, and the test skips saying so.
//!
//! Dropping the pair deletes both namespaces (and with them the veth pair). Processes started in
//! them must be ended first: keep their guards declared after the pair.
//!
//! Standalone module: include it with `#[path = "support/netns.rs"] mod netns;`.
#![allow(dead_code)]

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// One side of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// Two namespaces joined by a veth pair: `A` has [`NetPair::addr_a`], `B` has
/// [`NetPair::addr_b`], on a /24 of their own.
pub struct NetPair {
    ns_a: String,
    ns_b: String,
    /// Created so far, deleted on drop.
    made: Vec<String>,
}

/// Interface names (each lives in its own namespace, so they clash with nothing).
const DEV_A: &str = "gtA";
const DEV_B: &str = "gtB";

/// Runs `ip` with `args`; `Err` with its stderr on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip` (is iproute2 installed?): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetPair {
    /// Creates the namespaces, the veth pair and the addresses; `tag` tells this test's pair
    /// apart from others running at the same time.
    pub fn create(tag: &str) -> Result<NetPair, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root: network namespaces cannot be created".into());
        }
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("grpc-{}-{tag}-{n}", std::process::id());
        let mut pair = NetPair {
            ns_a: format!("{base}-a"),
            ns_b: format!("{base}-b"),
            made: Vec::new(),
        };
        for ns in [pair.ns_a.clone(), pair.ns_b.clone()] {
            ip(&["netns", "add", &ns])?;
            pair.made.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        let (a, b) = (pair.ns_a.clone(), pair.ns_b.clone());
        ip(&[
            "link", "add", DEV_A, "netns", &a, "type", "veth", "peer", "name", DEV_B, "netns", &b,
        ])?;
        ip(&["-n", &a, "addr", "add", "10.231.7.1/24", "dev", DEV_A])?;
        ip(&["-n", &b, "addr", "add", "10.231.7.2/24", "dev", DEV_B])?;
        ip(&["-n", &a, "link", "set", DEV_A, "up"])?;
        ip(&["-n", &b, "link", "set", DEV_B, "up"])?;
        Ok(pair)
    }

    /// Side A's address.
    pub fn addr_a(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, 7, 1)
    }

    /// Side B's address.
    pub fn addr_b(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, 7, 2)
    }

    /// The namespace name of a side.
    pub fn ns(&self, side: Side) -> &str {
        match side {
            Side::A => &self.ns_a,
            Side::B => &self.ns_b,
        }
    }

    /// Runs `f` on a new thread moved into `side`'s namespace and returns its result.
    pub fn enter<T: Send + 'static>(
        &self,
        side: Side,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let path = format!("/var/run/netns/{}", self.ns(side));
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on a namespace fd we own; it moves only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|_| panic!("the thread in namespace {side:?} panicked"))
    }

    /// A command run inside `side`'s namespace (`ip netns exec NS program`). `ip` execs the
    /// program in place: the child's PID is the program's.
    pub fn command(&self, side: Side, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns(side), program]);
        c
    }

    /// Cuts the wire by taking `side`'s end of the veth pair down: what the other side sends is
    /// dropped without a trace (its routes stay, its peer is gone), and what `side` sends finds
    /// no route.
    pub fn cut(&self, side: Side) {
        let dev = if side == Side::A { DEV_A } else { DEV_B };
        ip(&["-n", self.ns(side), "link", "set", dev, "down"]).expect("take the link down");
    }

    /// Mends the wire cut with [`cut`](Self::cut).
    pub fn mend(&self, side: Side) {
        let dev = if side == Side::A { DEV_A } else { DEV_B };
        ip(&["-n", self.ns(side), "link", "set", dev, "up"]).expect("bring the link up");
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        for ns in self.made.drain(..) {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Creates a pair, or prints why the test is skipped and returns `None`.
pub fn pair_or_skip(test: &str) -> Option<NetPair> {
    match NetPair::create(test) {
        Ok(p) => Some(p),
        Err(why) => {
            eprintln!("SKIPPED {test}: network namespaces not available here: {why}");
            None
        }
    }
}
