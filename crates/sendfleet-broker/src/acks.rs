//! Batched acknowledgements.
//!
//! Jobs finish out of order, so a `multiple` ack is only safe up to the highest tag
//! below which *every* delivery is settled. The batcher tracks that contiguous run and
//! acks it with one frame every few milliseconds, instead of one frame per job. A
//! finished delivery stuck behind a slow one (a job held by a paused provider) is acked
//! on its own after a short wait, so one slow job never pins the prefetch.
//!
//! Settling is already safe when `complete` is called (the job's consequences are
//! confirmed); batching only delays the ack frame. If the connection dies before the
//! frame goes out, the broker redelivers, and duplicate suppression handles it.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use lapin::{Channel, options::BasicAckOptions};
use parking_lot::Mutex;

/// How often pending acks are flushed.
const FLUSH_EVERY: Duration = Duration::from_millis(2);
/// A finished delivery waits at most this long for the tags below it.
const MAX_WAIT: Duration = Duration::from_millis(20);

/// One consumer channel's ack batcher.
pub struct AckBatcher {
    channel: Channel,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Lowest tag not yet known settled.
    next: u64,
    /// Highest tag of the contiguous settled run not yet acked.
    ack_upto: Option<u64>,
    /// Settled tags above a gap: tag → (settled at, already acked on its own).
    waiting: BTreeMap<u64, (Instant, bool)>,
}

impl State {
    fn settle(&mut self, tag: u64, acked: bool, now: Instant) {
        if tag < self.next {
            return;
        }
        self.waiting.insert(tag, (now, acked));
        while let Some((_, acked)) = self.waiting.remove(&self.next) {
            // The bound of a `multiple` ack must itself be outstanding, or the broker
            // closes the channel (unknown delivery tag): skip tags already settled.
            if !acked {
                self.ack_upto = Some(self.next);
            }
            self.next += 1;
        }
    }

    /// What to ack now: the contiguous run, and single tags settled before `cutoff`.
    fn due(&mut self, cutoff: Instant) -> (Option<u64>, Vec<u64>) {
        let upto = self.ack_upto.take();
        let mut singles = Vec::new();
        for (tag, (at, acked)) in self.waiting.iter_mut() {
            if !*acked && *at <= cutoff {
                *acked = true;
                singles.push(*tag);
            }
        }
        (upto, singles)
    }
}

impl AckBatcher {
    /// A batcher for `channel`, flushing in the background until the channel closes.
    pub fn start(channel: Channel) -> Arc<AckBatcher> {
        let batcher = Arc::new(AckBatcher { channel, state: Mutex::new(State { next: 1, ..State::default() }) });
        let worker = batcher.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FLUSH_EVERY).await;
                if !worker.channel.status().connected() || worker.flush(MAX_WAIT).await.is_err() {
                    return;
                }
            }
        });
        batcher
    }

    /// Marks `tag` settled: its ack will be sent (`acked = false`), or it was settled
    /// by other means (nack/requeue; `acked = true`) and only unblocks the run.
    pub fn settle(&self, tag: u64, acked: bool) {
        self.state.lock().settle(tag, acked, Instant::now());
    }

    /// Sends what is due: one `multiple` ack for the contiguous run, single acks for
    /// deliveries that waited longer than `max_wait` behind a gap. `flush(Duration::ZERO)`
    /// acks everything settled (shutdown).
    pub async fn flush(&self, max_wait: Duration) -> Result<(), lapin::Error> {
        let cutoff = Instant::now().checked_sub(max_wait).unwrap_or_else(Instant::now);
        let (upto, singles) = self.state.lock().due(cutoff);
        if let Some(tag) = upto {
            // Covers only outstanding deliveries: tags already acked singly or
            // requeued are not outstanding any more, so this never double-acks.
            self.channel.basic_ack(tag, BasicAckOptions { multiple: true }).await?;
        }
        let singles = singles.into_iter().map(|tag| self.channel.basic_ack(tag, BasicAckOptions { multiple: false }));
        for result in futures_util::future::join_all(singles).await {
            result?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settle_all(settled: &[(u64, bool)]) -> State {
        let mut state = State { next: 1, ..State::default() };
        let now = Instant::now();
        for &(tag, acked) in settled {
            state.settle(tag, acked, now);
        }
        state
    }

    #[test]
    fn the_run_advances_only_over_contiguous_tags() {
        let mut state = settle_all(&[(2, false), (3, false)]);
        assert_eq!((state.next, state.ack_upto), (1, None));
        state.settle(1, false, Instant::now());
        assert_eq!((state.next, state.ack_upto), (4, Some(3)));
        assert!(state.waiting.is_empty());
    }

    #[test]
    fn requeued_tags_unblock_the_run_without_an_ack() {
        let mut state = settle_all(&[(1, false), (2, true), (4, false)]);
        assert_eq!((state.next, state.ack_upto), (3, Some(1)), "tag 2 was requeued: the bound stays at 1");
        let (upto, singles) = state.due(Instant::now() - Duration::from_secs(1));
        assert_eq!(upto, Some(1));
        assert!(singles.is_empty(), "tag 4 has not waited long enough");
        let (upto, singles) = state.due(Instant::now());
        assert_eq!((upto, singles), (None, vec![4]), "tag 4 is acked on its own once due");
        state.settle(3, false, Instant::now());
        assert_eq!(state.ack_upto, Some(3), "the bound is the last outstanding tag, not the one acked singly");
        assert_eq!(state.next, 5);
        state.settle(5, true, Instant::now());
        assert_eq!(state.ack_upto, Some(3), "a requeued tag is never the bound");
    }
}
