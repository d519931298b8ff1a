//! Failpoints: the named steps between receiving work and settling it, where the fault
//! matrix (`crates/sendfleet-e2e/tests/faults/`) injects a crash, an error or a stall.
//!
//! Built on tikv's [`fail`](https://docs.rs/fail) crate, behind this crate's `enabled`
//! feature. Without it (every release build) [`hit`] is an empty `async fn` that the
//! compiler removes, so no failpoint code or name reaches the binaries.
//!
//! With it, a process reads `FAILPOINTS` at start-up ([`setup`]), in fail's syntax:
//! `FAILPOINTS="worker.provider_answered=1*return(abort);ingest.confirmed=return(stall:15000)"`.
//! The argument of `return(…)` picks the [`Fault`]:
//!
//! | argument | fault |
//! |---|---|
//! | `abort` | the process dies on the spot (`std::process::abort`, like `kill -9`) |
//! | `error` | the step fails with [`Injected`], as if its I/O had failed |
//! | `stall:<ms>` | the task sleeps `<ms>` before going on (past its caller's timeout) |
//!
//! fail's own prefixes apply: `3*return(error)` fires three times, `20%return(error)` on a
//! fifth of the hits. Every fault that fires is written to standard error
//! (`failpoint worker.before_ack: error`), so a fault test can check that it did.

use std::{fmt, time::Duration};

/// A failpoint: one step between receiving work and settling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Point {
    /// Dispatcher: every job of a request is confirmed by the broker.
    DispatcherJobsConfirmed,
    /// Dispatcher: about to ack the request.
    DispatcherBeforeAck,
    /// Worker: the provider answered the send (nothing recorded yet).
    WorkerProviderAnswered,
    /// Worker: the sent record of an accepted message is written.
    WorkerSentRecorded,
    /// Worker: every consequence of the job (event, retry, dead letter, fallback) is
    /// confirmed by the broker.
    WorkerConsequencesConfirmed,
    /// Worker: about to ack the job.
    WorkerBeforeAck,
    /// Fallback: the armed SMS job is claimed (not yet published).
    FallbackTaken,
    /// Fallback: the SMS job and its event are confirmed by the broker (not yet marked fired).
    FallbackPublished,
    /// Fallback: the claim is marked fired.
    FallbackMarked,
    /// callback-ingest: the body is parsed into events.
    IngestParsed,
    /// callback-ingest: the events are confirmed by the broker.
    IngestConfirmed,
    /// callback-ingest: about to answer 2xx.
    IngestBeforeResponse,
}

impl Point {
    /// Every failpoint, in the order work flows through them.
    pub const ALL: [Point; 12] = [
        Point::DispatcherJobsConfirmed,
        Point::DispatcherBeforeAck,
        Point::WorkerProviderAnswered,
        Point::WorkerSentRecorded,
        Point::WorkerConsequencesConfirmed,
        Point::WorkerBeforeAck,
        Point::FallbackTaken,
        Point::FallbackPublished,
        Point::FallbackMarked,
        Point::IngestParsed,
        Point::IngestConfirmed,
        Point::IngestBeforeResponse,
    ];

    /// The name `FAILPOINTS` uses.
    pub const fn name(self) -> &'static str {
        match self {
            Point::DispatcherJobsConfirmed => "dispatcher.jobs_confirmed",
            Point::DispatcherBeforeAck => "dispatcher.before_ack",
            Point::WorkerProviderAnswered => "worker.provider_answered",
            Point::WorkerSentRecorded => "worker.sent_recorded",
            Point::WorkerConsequencesConfirmed => "worker.consequences_confirmed",
            Point::WorkerBeforeAck => "worker.before_ack",
            Point::FallbackTaken => "fallback.taken",
            Point::FallbackPublished => "fallback.published",
            Point::FallbackMarked => "fallback.marked",
            Point::IngestParsed => "ingest.parsed",
            Point::IngestConfirmed => "ingest.confirmed",
            Point::IngestBeforeResponse => "ingest.before_response",
        }
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a failpoint does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The process dies at once, as with `kill -9`.
    Abort,
    /// The step fails with [`Injected`].
    Error,
    /// The task sleeps this long, then goes on.
    Stall(Duration),
}

impl Fault {
    /// The `FAILPOINTS` action for this fault: `return(abort)`, `return(error)`,
    /// `return(stall:<ms>)`.
    pub fn action(self) -> String {
        match self {
            Fault::Abort => "return(abort)".into(),
            Fault::Error => "return(error)".into(),
            Fault::Stall(duration) => format!("return(stall:{})", duration.as_millis()),
        }
    }

    /// Parses the argument of `return(…)`; `None` for anything else.
    pub fn parse(argument: &str) -> Option<Fault> {
        match argument.trim() {
            "abort" => Some(Fault::Abort),
            "error" => Some(Fault::Error),
            other => {
                let ms = other.strip_prefix("stall:")?.trim().parse::<u64>().ok()?;
                Some(Fault::Stall(Duration::from_millis(ms)))
            }
        }
    }
}

/// The error of a step failed on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("fault injected at failpoint {0}")]
pub struct Injected(pub Point);

/// Evaluates `point`: `Ok` to go on (after a stall, if one was injected), `Err` when an
/// error was injected; never returns when an abort was.
#[cfg(feature = "enabled")]
pub async fn hit(point: Point) -> Result<(), Injected> {
    let fault = fail::eval(point.name(), |argument| argument.as_deref().and_then(Fault::parse)).flatten();
    match fault {
        None => Ok(()),
        Some(Fault::Abort) => {
            eprintln!("failpoint {point}: abort");
            std::process::abort()
        }
        Some(Fault::Error) => {
            eprintln!("failpoint {point}: error");
            Err(Injected(point))
        }
        Some(Fault::Stall(duration)) => {
            eprintln!("failpoint {point}: stall {} ms", duration.as_millis());
            tokio::time::sleep(duration).await;
            Ok(())
        }
    }
}

/// Evaluates `point`: without the `enabled` feature, nothing to evaluate.
#[cfg(not(feature = "enabled"))]
#[inline(always)]
pub async fn hit(_point: Point) -> Result<(), Injected> {
    Ok(())
}

/// Whether failpoints are compiled in.
pub const ENABLED: bool = cfg!(feature = "enabled");

/// Reads `FAILPOINTS` from the environment (call first thing in `main`). A bad
/// `FAILPOINTS` value, or one given to a build without failpoints, stops the process
/// (exit 64) with a message: a fault test must not run silently without its fault.
pub fn setup() {
    #[cfg(not(feature = "enabled"))]
    if std::env::var_os("FAILPOINTS").is_some() {
        eprintln!("FAILPOINTS is set, but this build has no failpoints (they are compiled into test builds only)");
        std::process::exit(64);
    }
    #[cfg(feature = "enabled")]
    if let Ok(spec) = std::env::var("FAILPOINTS") {
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((name, action)) = entry.split_once('=') else {
                eprintln!("FAILPOINTS: '{entry}' is not name=action");
                std::process::exit(64);
            };
            if let Err(err) = fail::cfg(name.trim(), action.trim()) {
                eprintln!("FAILPOINTS: {name}: {err}");
                std::process::exit(64);
            }
        }
    }
}

/// Sets `point` to `action` in this process (in-process tests; fail's syntax).
#[cfg(feature = "enabled")]
pub fn configure(point: Point, action: &str) -> Result<(), String> {
    fail::cfg(point.name(), action)
}

/// Clears `point` in this process.
#[cfg(feature = "enabled")]
pub fn clear(point: Point) {
    fail::remove(point.name());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_through_the_parser() {
        for fault in [Fault::Abort, Fault::Error, Fault::Stall(Duration::from_millis(1500))] {
            let action = fault.action();
            let argument = action.strip_prefix("return(").and_then(|a| a.strip_suffix(')')).unwrap();
            assert_eq!(Fault::parse(argument), Some(fault), "{action}");
        }
        assert_eq!(Fault::parse("stall:x"), None);
        assert_eq!(Fault::parse("boom"), None);
    }

    #[test]
    fn names_are_unique_and_grouped_by_service() {
        let names: std::collections::HashSet<&str> = Point::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names.len(), Point::ALL.len());
        for name in names {
            let service = name.split('.').next().unwrap();
            assert!(["dispatcher", "worker", "fallback", "ingest"].contains(&service), "{name}");
        }
    }

    #[cfg(feature = "enabled")]
    #[tokio::test(start_paused = true)]
    async fn configured_points_fire_as_told_and_then_stop() {
        configure(Point::IngestParsed, "1*return(error)").unwrap();
        assert_eq!(hit(Point::IngestParsed).await, Err(Injected(Point::IngestParsed)));
        assert_eq!(hit(Point::IngestParsed).await, Ok(()), "fired once only");
        configure(Point::IngestConfirmed, "return(stall:5000)").unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(hit(Point::IngestConfirmed).await, Ok(()));
        assert!(started.elapsed() >= Duration::from_secs(5));
        clear(Point::IngestConfirmed);
        clear(Point::IngestParsed);
    }

    #[cfg(not(feature = "enabled"))]
    #[tokio::test]
    async fn without_the_feature_nothing_fires() {
        assert!(!ENABLED);
        assert_eq!(hit(Point::WorkerBeforeAck).await, Ok(()));
    }
}
