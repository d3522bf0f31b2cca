//! A timer thread for `serve --handler-mode deferred`: runs each job when its time comes, so a
//! handler's wait holds no worker (its responder waits in the heap).

use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send>;

struct Due(Instant, u64, Job);

impl PartialEq for Due {
    fn eq(&self, o: &Due) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Due) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Due) -> std::cmp::Ordering {
        (o.0, o.1).cmp(&(self.0, self.1)) // earliest first
    }
}

#[derive(Default)]
struct Inner {
    heap: BinaryHeap<Due>,
    seq: u64,
}

/// Runs jobs after a delay, on one thread of its own.
#[derive(Clone)]
pub struct Timer(Arc<(Mutex<Inner>, Condvar)>);

impl Timer {
    /// Starts the timer thread.
    pub fn start() -> std::io::Result<Timer> {
        let t = Timer(Arc::default());
        let t2 = t.clone();
        std::thread::Builder::new()
            .name("gracerpc-timer".into())
            .spawn(move || t2.run())?;
        Ok(t)
    }

    /// Runs `job` after `delay`.
    pub fn after(&self, delay: Duration, job: impl FnOnce() + Send + 'static) {
        let (inner, cv) = &*self.0;
        let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
        g.seq += 1;
        let seq = g.seq;
        g.heap.push(Due(Instant::now() + delay, seq, Box::new(job)));
        drop(g);
        cv.notify_one();
    }

    fn run(&self) {
        let (inner, cv) = &*self.0;
        let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while g.heap.peek().is_some_and(|d| d.0 <= now) {
                if let Some(d) = g.heap.pop() {
                    due.push(d.2);
                }
            }
            if !due.is_empty() {
                drop(g);
                for job in due {
                    job();
                }
                g = inner.lock().unwrap_or_else(|p| p.into_inner());
                continue;
            }
            g = match g.heap.peek().map(|d| d.0 - now) {
                Some(wait) => {
                    cv.wait_timeout(g, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => cv.wait(g).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }
}
