//! Priority lanes within one provider's rate: which waiting job takes the next slot.
//!
//! A job holds a [`LaneTicket`] while it takes its rate slot, and the gate hands out at
//! most `width` tickets at once. Slots are reserved in the order tasks ask for them, so
//! without the gate a job of a higher lane would queue behind every lower job already
//! reserving; with it, at most `width` reservations are ahead of it (the width is a few
//! milliseconds of the provider's rate), and each freed ticket goes to the highest lane
//! that waits — except that a lower lane below its minimum share of the recent grants
//! goes first, so it slows down under a flood of higher jobs but never stops.

use std::{collections::VecDeque, sync::Arc};

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Grants remembered for the minimum shares.
const WINDOW: usize = 200;

/// The gate of one provider in one process.
#[derive(Clone)]
pub struct LaneGate {
    inner: Arc<Mutex<State>>,
}

struct State {
    available: usize,
    /// Waiters per lane, lane 0 the highest.
    waiting: Vec<VecDeque<oneshot::Sender<LaneTicket>>>,
    /// The lanes of the last [`WINDOW`] grants, and how many each has among them.
    recent: VecDeque<usize>,
    counts: Vec<usize>,
    /// Least share of the grants each lane gets while it waits (lane 0's is unused).
    min_share: Vec<f64>,
}

/// The right to take one rate slot; handed back when dropped.
pub struct LaneTicket {
    gate: Option<Arc<Mutex<State>>>,
}

impl Drop for LaneTicket {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            release(&gate);
        }
    }
}

impl LaneGate {
    /// A gate handing out at most `width` tickets at once to `min_share.len()` lanes
    /// (lane 0 the highest); `min_share[i]` is lane i's least share of the grants while
    /// it has waiters.
    pub fn new(width: usize, min_share: Vec<f64>) -> LaneGate {
        let lanes = min_share.len().max(1);
        LaneGate {
            inner: Arc::new(Mutex::new(State {
                available: width.max(1),
                waiting: (0..lanes).map(|_| VecDeque::new()).collect(),
                recent: VecDeque::with_capacity(WINDOW),
                counts: vec![0; lanes],
                min_share,
            })),
        }
    }

    /// Waits for a ticket for a job of `lane` (clamped to the lowest lane).
    /// Cancel-safe: a waiter dropped before or after being chosen loses no ticket.
    pub async fn enter(&self, lane: usize) -> LaneTicket {
        let receiver = {
            let mut state = self.inner.lock();
            let lane = lane.min(state.waiting.len() - 1);
            if state.available > 0 && state.waiting.iter().all(VecDeque::is_empty) {
                state.available -= 1;
                state.record(lane);
                return LaneTicket { gate: Some(self.inner.clone()) };
            }
            let (sender, receiver) = oneshot::channel();
            state.waiting[lane].push_back(sender);
            receiver
        };
        // The sender is dropped unsent only with the gate itself, which this holds.
        receiver.await.unwrap_or(LaneTicket { gate: None })
    }
}

impl State {
    fn record(&mut self, lane: usize) {
        if self.recent.len() == WINDOW
            && let Some(old) = self.recent.pop_front()
        {
            self.counts[old] -= 1;
        }
        self.recent.push_back(lane);
        self.counts[lane] += 1;
    }

    /// The lane the next ticket goes to: the lowest lane below its minimum share that
    /// waits, else the highest that waits.
    fn pick(&self) -> Option<usize> {
        let waits = |lane: usize| !self.waiting[lane].is_empty();
        let granted = self.recent.len() as f64;
        let starved = (1..self.waiting.len())
            .rev()
            .find(|&lane| waits(lane) && (self.counts[lane] as f64) < self.min_share[lane] * granted);
        starved.or_else(|| (0..self.waiting.len()).find(|&lane| waits(lane)))
    }
}

/// Hands a freed ticket to the next waiter, or back to the pool.
fn release(gate: &Arc<Mutex<State>>) {
    loop {
        let sender = {
            let mut state = gate.lock();
            match state.pick() {
                Some(lane) => {
                    state.record(lane);
                    state.waiting[lane].pop_front().expect("pick chose a lane with waiters")
                }
                None => {
                    state.available += 1;
                    return;
                }
            }
        };
        // Sent outside the lock: a ticket refused by a waiter that has gone is disarmed
        // and offered to the next one.
        match sender.send(LaneTicket { gate: Some(gate.clone()) }) {
            Ok(()) => return,
            Err(mut ticket) => ticket.gate = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lanes of the grants made while every lane has `queued` waiters and one ticket
    /// circulates.
    async fn grants(min_share: Vec<f64>, queued: usize, taken: usize) -> Vec<usize> {
        let gate = LaneGate::new(1, min_share.clone());
        let first = gate.enter(0).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for lane in (0..min_share.len()).rev() {
            for _ in 0..queued {
                let (gate, order) = (gate.clone(), order.clone());
                tasks.push(tokio::spawn(async move {
                    let _ticket = gate.enter(lane).await;
                    order.lock().push(lane);
                }));
                tokio::task::yield_now().await;
            }
        }
        drop(first);
        for task in tasks {
            task.await.unwrap();
        }
        order.lock().iter().copied().take(taken).collect()
    }

    #[tokio::test]
    async fn the_highest_waiting_lane_goes_first_whatever_the_arrival_order() {
        let order = grants(vec![0.0, 0.0, 0.0], 5, 15).await;
        assert_eq!(order, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
    }

    #[tokio::test]
    async fn lower_lanes_keep_their_minimum_share_under_a_flood() {
        let order = grants(vec![0.0, 0.1, 0.05], 400, 400).await;
        let share = |lane: usize| order.iter().filter(|&&l| l == lane).count() as f64 / order.len() as f64;
        assert!((0.09..0.13).contains(&share(1)), "normal got {}", share(1));
        assert!((0.04..0.07).contains(&share(2)), "bulk got {}", share(2));
        assert!(share(0) > 0.8, "high got {}", share(0));
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_loses_no_ticket() {
        let gate = LaneGate::new(1, vec![0.0, 0.0]);
        let held = gate.enter(1).await;
        let gone = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter(0).await }
        });
        tokio::task::yield_now().await;
        gone.abort();
        let _ = gone.await;
        drop(held);
        // The ticket went back to the pool, not to the waiter that left.
        let again = tokio::time::timeout(std::time::Duration::from_secs(1), gate.enter(1)).await;
        assert!(again.is_ok(), "the ticket was lost");
    }

    #[tokio::test]
    async fn at_most_width_tickets_are_out_at_once() {
        let gate = LaneGate::new(3, vec![0.0]);
        let held = futures_util::future::join_all((0..3).map(|_| gate.enter(0))).await;
        let fourth = tokio::time::timeout(std::time::Duration::from_millis(50), gate.enter(0)).await;
        assert!(fourth.is_err(), "a fourth ticket while three are out");
        drop(held);
        assert!(tokio::time::timeout(std::time::Duration::from_secs(1), gate.enter(0)).await.is_ok());
    }
}
