//! Which executor polls a call, and what a pending call offers it: gracerpc's own executors
//! ([`block_on`](super::block_on), [`CallSet`](super::CallSet)) read a call's answer on the
//! polling thread when they can, and a set writes its round's requests itself; a foreign
//! executor leaves both to the client's I/O thread.
//!
//! The calls (`call.rs`) and the executors (`blocking.rs`, `call_set.rs`) meet here, so neither
//! imports the other for it.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Instant;

use super::link::Link;
use super::table::NodeTable;

/// Which of gracerpc's own executors polls the current future, if any: it decides whether a
/// pending call offers the polling thread its read, and how a call's request is written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Driver {
    /// A foreign executor (or none): the I/O thread reads and wakes.
    Foreign,
    /// [`block_on`](super::block_on): a call may take the reading over before its request
    /// goes out.
    BlockOn,
    /// A [`CallSet`](super::CallSet): requests are written per round by the polling thread
    /// (`call_set::defer_flush`), and a pending call offers its read.
    Set {
        /// Whether more than a write's worth of the round's futures are still to be polled
        /// after this one: then a request on an idle connection goes out at once.
        long_round: bool,
    },
}

/// A call pending on a link, whose answer the polling thread could read itself.
pub(super) struct OwnRead {
    pub link: Arc<Link>,
    pub table: Arc<NodeTable>,
    pub id: u64,
    pub deadline: Instant,
}

thread_local! {
    /// Who polls the current future (see [`Driver`]).
    static DRIVER: Cell<Driver> = const { Cell::new(Driver::Foreign) };
    /// The reads pending calls offered during the current poll.
    static OFFERED: RefCell<Vec<OwnRead>> = const { RefCell::new(Vec::new()) };
}

/// Who polls the current future.
pub(super) fn driver() -> Driver {
    DRIVER.get()
}

/// Runs `f` with `d` as the current future's driver, and restores the outer one after.
pub(super) fn driven_by<R>(d: Driver, f: impl FnOnce() -> R) -> R {
    let outer = DRIVER.replace(d);
    let r = f();
    DRIVER.set(outer);
    r
}

/// Called, under one of gracerpc's executors, by a call pending on `link` as `id`: offers the
/// polling thread the read of its answer.
pub(super) fn offer_own_read(link: &Arc<Link>, id: u64, table: &Arc<NodeTable>, deadline: Instant) {
    OFFERED.with_borrow_mut(|o| {
        o.push(OwnRead {
            link: link.clone(),
            table: table.clone(),
            id,
            deadline,
        })
    });
}

/// Runs `f` on the reads offered since they were last taken (it takes what it keeps).
pub(super) fn with_offers<R>(f: impl FnOnce(&mut Vec<OwnRead>) -> R) -> R {
    OFFERED.with_borrow_mut(f)
}
