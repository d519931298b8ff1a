//! Pausing a provider after an auth/config failure, probing it, resuming it.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use parking_lot::Mutex;
use tokio::{sync::Notify, time::Instant};

/// Whether a task may send now, and whether its send is the probe.
pub(crate) enum Pass {
    /// The provider is not paused.
    Open,
    /// The provider is paused and this task's request is the probe; call
    /// [`PauseGate::resume`] if it succeeds.
    Probe,
    /// Paused for longer than the hold limit: give the job back to the queue.
    HoldExpired,
}

/// One provider's pause state. While paused, every sending task waits here (holding its
/// delivery, so the prefetch fills and the broker stops delivering); one task at a
/// time is let through as a probe every `probe_every`.
pub(crate) struct PauseGate {
    paused: AtomicBool,
    resumed: Notify,
    next_probe: Mutex<Option<Instant>>,
    probe_every: Duration,
    max_hold: Duration,
    gauge: metrics::Gauge,
}

impl PauseGate {
    pub fn new(provider: &str, probe_every: Duration, max_hold: Duration) -> PauseGate {
        let gauge = metrics::gauge!(sendfleet_telemetry::metrics::PROVIDER_PAUSED, "provider" => provider.to_owned());
        gauge.set(0.0);
        PauseGate {
            paused: AtomicBool::new(false),
            resumed: Notify::new(),
            next_probe: Mutex::new(None),
            probe_every,
            max_hold,
            gauge,
        }
    }

    /// Waits until the task may send.
    pub async fn pass(&self) -> Pass {
        let held_since = Instant::now();
        loop {
            if !self.paused.load(Ordering::Acquire) {
                return Pass::Open;
            }
            if held_since.elapsed() >= self.max_hold {
                return Pass::HoldExpired;
            }
            let wait = {
                let mut next = self.next_probe.lock();
                let now = Instant::now();
                match *next {
                    Some(at) if at <= now => {
                        // This task probes; the next probe is one interval away.
                        *next = Some(now + self.probe_every);
                        return Pass::Probe;
                    }
                    Some(at) => at - now,
                    None => self.probe_every,
                }
            };
            let notified = self.resumed.notified();
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(wait.min(self.max_hold)) => {}
            }
        }
    }

    /// Pauses (idempotent); the first probe goes out one interval from now.
    pub fn pause(&self, provider: &str, reason: &str) {
        let mut next = self.next_probe.lock();
        if !self.paused.swap(true, Ordering::AcqRel) {
            *next = Some(Instant::now() + self.probe_every);
            self.gauge.set(1.0);
            tracing::error!(
                provider,
                reason,
                probe_every_s = self.probe_every.as_secs_f64(),
                "provider paused: credentials or account configuration refused; fix them, sending resumes by itself"
            );
        }
    }

    /// Resumes after a successful probe and wakes every waiting task.
    pub fn resume(&self, provider: &str) {
        if self.paused.swap(false, Ordering::AcqRel) {
            self.gauge.set(0.0);
            tracing::warn!(provider, "provider answered again; resuming");
        }
        self.resumed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paused_tasks_wait_and_one_probes_per_interval() {
        let gate = Arc::new(PauseGate::new("p", Duration::from_secs(10), Duration::from_secs(300)));
        assert!(matches!(gate.pass().await, Pass::Open));
        gate.pause("p", "401");
        let started = Instant::now();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { matches!(gate.pass().await, Pass::Probe) })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(11)).await;
        // Exactly one probe after one interval; the others still wait.
        let finished: Vec<_> = waiters.iter().filter(|w| w.is_finished()).collect();
        assert_eq!(finished.len(), 1);
        gate.resume("p");
        let mut probes = 0;
        for waiter in waiters {
            probes += usize::from(waiter.await.unwrap());
        }
        assert_eq!(probes, 1);
        assert!(started.elapsed() >= Duration::from_secs(10));
        assert!(matches!(gate.pass().await, Pass::Open));
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_held_too_long_goes_back() {
        let gate = PauseGate::new("p", Duration::from_secs(1_000), Duration::from_secs(60));
        gate.pause("p", "403");
        assert!(matches!(gate.pass().await, Pass::HoldExpired));
    }
}
