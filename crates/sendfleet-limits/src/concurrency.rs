//! The provider's concurrency as owned semaphore permits, shrunk when the provider
//! signals overload and grown back as it recovers (AIMD).

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most `limit` requests in flight, where `limit` moves between 1 and the configured
/// concurrency: ×0.7 on an overload signal (429/5xx), +1 after a limit's worth of
/// successes in a row. A permit is owned by the sending task and released when dropped,
/// so the bound holds structurally.
#[derive(Clone)]
pub struct ConcurrencyLimit {
    inner: Arc<Inner>,
}

struct Inner {
    semaphore: Arc<Semaphore>,
    max: usize,
    state: Mutex<State>,
    in_flight: AtomicUsize,
}

struct State {
    /// The current limit.
    limit: usize,
    /// Permits still to be withdrawn (they were in use when the limit shrank).
    debt: usize,
    /// Successes since the limit last changed.
    successes: usize,
}

/// A permit; dropping it releases the slot (or pays the shrink debt).
pub struct ConcurrencyPermit {
    permit: Option<OwnedSemaphorePermit>,
    inner: Arc<Inner>,
}

impl Drop for ConcurrencyPermit {
    fn drop(&mut self) {
        self.inner.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mut state = self.inner.state.lock();
        if state.debt > 0 {
            state.debt -= 1;
            if let Some(permit) = self.permit.take() {
                permit.forget();
            }
        }
    }
}

impl ConcurrencyLimit {
    /// A limit of `max` (at least 1), starting at `max`.
    pub fn new(max: usize) -> ConcurrencyLimit {
        let max = max.max(1);
        ConcurrencyLimit {
            inner: Arc::new(Inner {
                semaphore: Arc::new(Semaphore::new(max)),
                max,
                state: Mutex::new(State { limit: max, debt: 0, successes: 0 }),
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    /// Waits for a permit.
    pub async fn acquire(&self) -> ConcurrencyPermit {
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = self.inner.semaphore.clone().acquire_owned().await.ok();
        self.inner.in_flight.fetch_add(1, Ordering::Relaxed);
        ConcurrencyPermit { permit, inner: self.inner.clone() }
    }

    /// The provider answered normally: grow back by one after `limit` successes.
    pub fn on_success(&self) {
        let mut state = self.inner.state.lock();
        if state.limit >= self.inner.max {
            return;
        }
        state.successes += 1;
        if state.successes >= state.limit {
            state.successes = 0;
            state.limit += 1;
            if state.debt > 0 {
                state.debt -= 1;
            } else {
                self.inner.semaphore.add_permits(1);
            }
        }
    }

    /// The provider signalled overload (429, 5xx, timeout): shrink to 70 %.
    pub fn on_overload(&self) {
        let mut state = self.inner.state.lock();
        let target = ((state.limit as f64) * 0.7).floor().max(1.0) as usize;
        let cut = state.limit - target;
        if cut == 0 {
            return;
        }
        state.limit = target;
        state.successes = 0;
        let forgotten = self.inner.semaphore.forget_permits(cut);
        state.debt += cut - forgotten;
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.inner.state.lock().limit
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::future::join_all;
    use tokio::time::Instant;

    use super::*;

    async fn run_batch(limit: &ConcurrencyLimit, jobs: usize) -> (usize, Duration) {
        let peak = Arc::new(Mutex::new(0usize));
        let started = Instant::now();
        let tasks = (0..jobs).map(|_| {
            let (limit, peak) = (limit.clone(), peak.clone());
            tokio::spawn(async move {
                let _permit = limit.acquire().await;
                {
                    let mut p = peak.lock();
                    *p = (*p).max(limit.in_flight());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            })
        });
        join_all(tasks).await;
        let peak = *peak.lock();
        (peak, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_in_flight() {
        let limit = ConcurrencyLimit::new(4);
        let (peak, took) = run_batch(&limit, 40).await;
        assert_eq!(peak, 4);
        // 40 requests of 100 ms, 4 at a time: exactly 1 s of (paused) time.
        assert_eq!(took, Duration::from_millis(1_000));
        assert_eq!(limit.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn overload_shrinks_and_success_grows_back() {
        let limit = ConcurrencyLimit::new(10);
        limit.on_overload();
        assert_eq!(limit.limit(), 7);
        limit.on_overload();
        assert_eq!(limit.limit(), 4);
        let (peak, _) = run_batch(&limit, 20).await;
        assert_eq!(peak, 4, "the shrunk limit is enforced");
        for _ in 0..4 {
            limit.on_success();
        }
        assert_eq!(limit.limit(), 5, "+1 after a limit's worth of successes");
        for _ in 0..200 {
            limit.on_success();
        }
        assert_eq!(limit.limit(), 10, "never above the configured concurrency");
        let (peak, _) = run_batch(&limit, 40).await;
        assert_eq!(peak, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn shrinking_while_permits_are_out_takes_them_back_on_release() {
        let limit = ConcurrencyLimit::new(4);
        let held: Vec<ConcurrencyPermit> = join_all((0..4).map(|_| limit.acquire())).await;
        limit.on_overload();
        assert_eq!(limit.limit(), 2);
        drop(held);
        let (peak, _) = run_batch(&limit, 10).await;
        assert_eq!(peak, 2);
        for _ in 0..1_000 {
            limit.on_overload();
        }
        assert_eq!(limit.limit(), 1, "never below one");
    }
}
