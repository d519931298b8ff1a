//! RCS capability checks before sending: numbers wanted by many concurrent jobs are
//! gathered for a few milliseconds into one query (≤ 500 numbers, Infobip's cap), each
//! answer is cached in Redis for the whole fleet, and every failure **fails open**: the
//! job is sent as RCS and the delivery report is the second line.
//!
//! Fleet-wide "ask once per number per TTL": a number missing from the cache is claimed
//! with `SET NX` (a short `P` marker) before it is asked; a worker that loses the claim
//! does not ask, it waits briefly for the winner's answer and otherwise fails open.
//! Keys: `<prefix>:cap:<provider>:<sender>:<digits>` = `E` (enabled), `N` (not
//! capable), `I` (invalid number), `P` (being asked). Unknown answers are not cached.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use metrics::counter;
use sendfleet_providers::{Capability, CapabilityError, Provider};
use sendfleet_telemetry::metrics::CAPABILITY_CHECKS_TOTAL;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Whoever answers capability queries: the provider adapter (or a test double).
pub(crate) trait CapabilitySource: Send + Sync + 'static {
    /// One query for numbers (E.164) that would receive from `sender`.
    fn query<'a>(
        &'a self,
        sender: &'a str,
        numbers: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, Capability)>, CapabilityError>>;
}

impl CapabilitySource for Arc<dyn Provider> {
    fn query<'a>(
        &'a self,
        sender: &'a str,
        numbers: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, Capability)>, CapabilityError>> {
        self.check_capability(sender, numbers)
    }
}

/// How the checker batches and caches.
#[derive(Debug, Clone)]
pub(crate) struct CheckerSettings {
    /// How long a batch gathers numbers after its first one.
    pub window: Duration,
    /// Most distinct numbers per batch (and so per query).
    pub max_batch: usize,
    /// How long an answer stays cached.
    pub cache_ttl: Duration,
    /// How long a claim protects a number being asked.
    pub claim_ttl: Duration,
    /// Queries in flight at once per worker and provider (the endpoint is throttled).
    pub max_in_flight: usize,
}

impl CheckerSettings {
    /// From the worker's config and the most numbers the provider takes per query.
    pub fn from_config(config: &sendfleet_config::WorkerConfig, max_batch: usize) -> CheckerSettings {
        CheckerSettings {
            window: Duration::from_millis(config.capability_batch_window_ms),
            max_batch,
            cache_ttl: Duration::from_secs(config.capability_cache_ttl_seconds),
            claim_ttl: Duration::from_secs(10),
            max_in_flight: 8,
        }
    }
}

struct Ask {
    sender: String,
    number: String,
    reply: oneshot::Sender<Capability>,
}

/// A provider's capability checker. Cheap to clone; the batching task ends when the
/// last clone is dropped.
#[derive(Clone)]
pub(crate) struct CapabilityChecker {
    asks: mpsc::Sender<Ask>,
}

struct Shared {
    provider: String,
    source: Box<dyn CapabilitySource>,
    pool: sendfleet_redis::RedisPool,
    prefix: String,
    settings: CheckerSettings,
}

impl CapabilityChecker {
    /// Starts the batching task for one provider.
    pub fn start(
        provider: &str,
        source: impl CapabilitySource,
        pool: sendfleet_redis::RedisPool,
        key_prefix: &str,
        settings: CheckerSettings,
    ) -> CapabilityChecker {
        let (asks, receiver) = mpsc::channel(16_384);
        let shared = Arc::new(Shared {
            provider: provider.to_owned(),
            source: Box::new(source),
            pool,
            prefix: format!("{key_prefix}:cap:{provider}:"),
            settings,
        });
        tokio::spawn(gather(receiver, shared));
        CapabilityChecker { asks }
    }

    /// Whether `number` can receive RCS from `sender`. Never fails: any problem is
    /// [`Capability::Unknown`], which sends RCS anyway.
    pub async fn lookup(&self, sender: &str, number: &str) -> Capability {
        let (reply, answer) = oneshot::channel();
        let ask = Ask { sender: sender.to_owned(), number: number.to_owned(), reply };
        if self.asks.send(ask).await.is_err() {
            return Capability::Unknown;
        }
        answer.await.unwrap_or(Capability::Unknown)
    }
}

/// Collects asks into batches: the first ask opens a window, which closes after
/// `window` or at `max_batch` distinct numbers; each batch is resolved on its own task
/// (at most `max_in_flight` at once) while the next one gathers.
async fn gather(mut receiver: mpsc::Receiver<Ask>, shared: Arc<Shared>) {
    let permits = Arc::new(Semaphore::new(shared.settings.max_in_flight.max(1)));
    while let Some(first) = receiver.recv().await {
        let deadline = tokio::time::Instant::now() + shared.settings.window;
        let mut batch = Batch::default();
        batch.push(first);
        while batch.len() < shared.settings.max_batch {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(ask)) => batch.push(ask),
                _ => break,
            }
        }
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let shared = shared.clone();
        tokio::spawn(async move {
            batch.resolve(&shared).await;
            drop(permit);
        });
    }
}

/// Distinct (sender, number) pairs and everyone waiting for each.
#[derive(Default)]
struct Batch {
    waiting: HashMap<(String, String), Vec<oneshot::Sender<Capability>>>,
}

impl Batch {
    fn push(&mut self, ask: Ask) {
        self.waiting.entry((ask.sender, ask.number)).or_default().push(ask.reply);
    }

    fn len(&self) -> usize {
        self.waiting.len()
    }

    async fn resolve(self, shared: &Shared) {
        let pairs: Vec<(String, String)> = self.waiting.keys().cloned().collect();
        let answers = match lookup_pairs(shared, &pairs).await {
            Ok(answers) => answers,
            Err(err) => {
                // Redis is down: fail open rather than stall sending.
                tracing::warn!(provider = %shared.provider, error = %err, "capability cache unavailable; sending RCS unchecked");
                sendfleet_telemetry::metrics::RedisStore::CapabilityCache.failed(1);
                count(shared, "error", pairs.len());
                HashMap::new()
            }
        };
        for (pair, replies) in self.waiting {
            let capability = answers.get(&pair).copied().unwrap_or(Capability::Unknown);
            for reply in replies {
                let _ = reply.send(capability);
            }
        }
    }
}

fn key(shared: &Shared, (sender, number): &(String, String)) -> String {
    format!("{}{sender}:{}", shared.prefix, number.trim_start_matches('+'))
}

fn from_letter(letter: &str) -> Option<Capability> {
    match letter {
        "E" => Some(Capability::Enabled),
        "N" => Some(Capability::NotCapable),
        "I" => Some(Capability::InvalidNumber),
        _ => None,
    }
}

fn letter(capability: Capability) -> Option<&'static str> {
    match capability {
        Capability::Enabled => Some("E"),
        Capability::NotCapable => Some("N"),
        Capability::InvalidNumber => Some("I"),
        Capability::Unknown => None,
    }
}

fn count(shared: &Shared, result: &'static str, n: usize) {
    if n > 0 {
        counter!(CAPABILITY_CHECKS_TOTAL, "provider" => shared.provider.clone(), "result" => result)
            .increment(n as u64);
    }
}

type Answers = HashMap<(String, String), Capability>;

/// Cache, then claims, then one query per sender for the numbers we claimed.
async fn lookup_pairs(shared: &Shared, pairs: &[(String, String)]) -> Result<Answers, String> {
    let mut connection = shared.pool.get().await.map_err(|e| e.to_string())?;
    let keys: Vec<String> = pairs.iter().map(|p| key(shared, p)).collect();
    let cached: Vec<Option<String>> =
        redis::cmd("MGET").arg(&keys).query_async(&mut *connection).await.map_err(|e| e.to_string())?;
    let mut answers = Answers::new();
    let mut misses = Vec::new();
    let mut pending = Vec::new();
    for (pair, value) in pairs.iter().zip(cached) {
        match value.as_deref() {
            Some("P") => pending.push(pair.clone()),
            Some(letter) => match from_letter(letter) {
                Some(capability) => {
                    answers.insert(pair.clone(), capability);
                }
                None => misses.push(pair.clone()),
            },
            None => misses.push(pair.clone()),
        }
    }
    count(shared, "cached", answers.len());

    // Claim the misses; only numbers we claimed are asked.
    let mut won = Vec::new();
    if !misses.is_empty() {
        let mut pipe = redis::pipe();
        let claim_ms = shared.settings.claim_ttl.as_millis() as u64;
        for pair in &misses {
            pipe.cmd("SET").arg(key(shared, pair)).arg("P").arg("NX").arg("PX").arg(claim_ms);
        }
        let claimed: Vec<Option<String>> = pipe.query_async(&mut *connection).await.map_err(|e| e.to_string())?;
        for (pair, claim) in misses.into_iter().zip(claimed) {
            if claim.is_some() { won.push(pair) } else { pending.push(pair) }
        }
    }
    drop(connection);

    let mut by_sender: HashMap<&str, Vec<String>> = HashMap::new();
    for (sender, number) in &won {
        by_sender.entry(sender.as_str()).or_default().push(number.clone());
    }
    for (sender, numbers) in by_sender {
        let fresh = ask(shared, sender, &numbers).await?;
        answers.extend(fresh);
    }

    if !pending.is_empty() {
        // Another worker is asking right now: give it a moment, then fail open.
        answers.extend(wait_for_others(shared, &pending).await);
    }
    Ok(answers)
}

/// Asks the provider, caches known answers and releases the claims of the rest.
async fn ask(shared: &Shared, sender: &str, numbers: &[String]) -> Result<Answers, String> {
    let result = shared.source.query(sender, numbers).await;
    let mut connection = shared.pool.get().await.map_err(|e| e.to_string())?;
    let ttl = shared.settings.cache_ttl.as_secs().max(1);
    let mut pipe = redis::pipe();
    let mut answers = Answers::new();
    match result {
        Ok(results) => {
            let by_number: HashMap<String, Capability> = results.into_iter().collect();
            for number in numbers {
                let capability = by_number.get(number).copied().unwrap_or(Capability::Unknown);
                let pair = (sender.to_owned(), number.clone());
                match letter(capability) {
                    Some(letter) => pipe.cmd("SET").arg(key(shared, &pair)).arg(letter).arg("EX").arg(ttl).ignore(),
                    None => pipe.cmd("DEL").arg(key(shared, &pair)).ignore(),
                };
                count(shared, capability.as_str(), 1);
                answers.insert(pair, capability);
            }
        }
        Err(err) => {
            let label = if err == CapabilityError::Throttled { "throttled" } else { "error" };
            tracing::debug!(provider = %shared.provider, error = %err, numbers = numbers.len(), "capability check failed; sending RCS unchecked");
            count(shared, label, numbers.len());
            for number in numbers {
                pipe.cmd("DEL").arg(key(shared, &(sender.to_owned(), number.clone()))).ignore();
            }
        }
    }
    pipe.query_async::<()>(&mut *connection).await.map_err(|e| e.to_string())?;
    Ok(answers)
}

/// Reads numbers another worker claimed a few times; whatever is still unanswered is
/// left out (unknown: RCS is sent, the delivery report decides).
async fn wait_for_others(shared: &Shared, pending: &[(String, String)]) -> Answers {
    let mut answers = Answers::new();
    let mut left: Vec<(String, String)> = pending.to_vec();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let Ok(mut connection) = shared.pool.get().await else { break };
        let keys: Vec<String> = left.iter().map(|p| key(shared, p)).collect();
        let Ok(values) = redis::cmd("MGET").arg(&keys).query_async::<Vec<Option<String>>>(&mut *connection).await
        else {
            break;
        };
        let mut still = Vec::new();
        for (pair, value) in left.into_iter().zip(values) {
            match value.as_deref().and_then(from_letter) {
                Some(capability) => {
                    answers.insert(pair, capability);
                }
                None => still.push(pair),
            }
        }
        left = still;
        if left.is_empty() {
            break;
        }
    }
    count(shared, "cached", answers.len());
    count(shared, "contended", left.len());
    answers
}

#[cfg(test)]
mod tests {
    use parking_lot::Mutex;

    use super::*;

    /// Answers from a rule, recording every query; optionally fails.
    #[derive(Clone, Default)]
    struct FakeSource {
        queries: Arc<Mutex<Vec<Vec<String>>>>,
        fail: Arc<Mutex<Option<CapabilityError>>>,
    }

    impl FakeSource {
        fn asked(&self) -> Vec<String> {
            self.queries.lock().iter().flatten().cloned().collect()
        }
    }

    /// Numbers ending in 0–2 are not capable, in 9 invalid, the rest enabled.
    fn rule(number: &str) -> Capability {
        match number.as_bytes().last() {
            Some(b'0'..=b'2') => Capability::NotCapable,
            Some(b'9') => Capability::InvalidNumber,
            _ => Capability::Enabled,
        }
    }

    impl CapabilitySource for FakeSource {
        fn query<'a>(
            &'a self,
            _sender: &'a str,
            numbers: &'a [String],
        ) -> BoxFuture<'a, Result<Vec<(String, Capability)>, CapabilityError>> {
            Box::pin(async move {
                self.queries.lock().push(numbers.to_vec());
                if let Some(err) = self.fail.lock().clone() {
                    return Err(err);
                }
                Ok(numbers.iter().map(|n| (n.clone(), rule(n))).collect())
            })
        }
    }

    struct Env {
        pool: sendfleet_redis::RedisPool,
        prefix: String,
    }

    impl Env {
        fn new() -> Env {
            let url = std::env::var("SENDFLEET_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            let pool = sendfleet_redis::RedisPool::from(
                deadpool_redis::Config::from_url(url)
                    .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                    .expect("redis pool"),
            );
            Env { pool, prefix: format!("sft-cap-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]) }
        }

        fn checker(&self, source: &FakeSource, window_ms: u64) -> CapabilityChecker {
            let settings = CheckerSettings {
                window: Duration::from_millis(window_ms),
                max_batch: 500,
                cache_ttl: Duration::from_secs(600),
                claim_ttl: Duration::from_secs(10),
                max_in_flight: 4,
            };
            CapabilityChecker::start("ib-rcs", source.clone(), self.pool.clone(), &self.prefix, settings)
        }

        async fn cleanup(self) {
            sendfleet_test_support::delete_redis_keys(&self.prefix).await;
        }
    }

    async fn look_up_all(checker: &CapabilityChecker, numbers: &[String]) -> Vec<Capability> {
        let lookups = numbers.iter().map(|n| {
            let checker = checker.clone();
            let n = n.clone();
            tokio::spawn(async move { checker.lookup("Agent", &n).await })
        });
        futures_util::future::join_all(lookups).await.into_iter().map(Result::unwrap).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_lookups_are_batched_at_most_500_and_asked_once() {
        let env = Env::new();
        let source = FakeSource::default();
        // A long window: every lookup below lands in a batch that closes on size.
        let checker = env.checker(&source, 200);
        let numbers: Vec<String> = (0..1_200).map(|i| format!("+9198{i:08}")).collect();
        let answers = look_up_all(&checker, &numbers).await;
        for (number, answer) in numbers.iter().zip(&answers) {
            assert_eq!(*answer, rule(number), "{number}");
        }
        let queries = source.queries.lock().clone();
        assert!(
            queries.iter().all(|q| !q.is_empty() && q.len() <= 500),
            "{:?}",
            queries.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert!(queries.len() >= 3 && queries.len() <= 12, "1,200 numbers in a few batches, got {}", queries.len());
        let mut asked = source.asked();
        asked.sort();
        asked.dedup();
        assert_eq!((asked.len(), source.asked().len()), (1_200, 1_200), "each number asked exactly once");

        // Cached fleet-wide: a second worker (its own checker) asks nothing.
        let other = env.checker(&source, 5);
        let again = look_up_all(&other, &numbers[..300]).await;
        assert_eq!(again, answers[..300].to_vec());
        assert_eq!(source.asked().len(), 1_200, "answers come from the cache");
        env.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_number_from_many_jobs_and_workers_is_asked_once() {
        let env = Env::new();
        let source = FakeSource::default();
        let (a, b) = (env.checker(&source, 20), env.checker(&source, 20));
        let numbers: Vec<String> = (0..200).map(|i| format!("+1555{:07}", i % 50)).collect();
        let (left, right) = tokio::join!(look_up_all(&a, &numbers), look_up_all(&b, &numbers));
        let asked = source.asked();
        let distinct: std::collections::HashSet<&String> = asked.iter().collect();
        assert_eq!(distinct.len(), asked.len(), "no number asked twice: {} asks", asked.len());
        assert!(asked.len() <= 50);
        // Answers are right, or unknown (fail open) for a number the other worker was
        // still asking when this one gave up waiting: never wrong.
        for (number, answer) in numbers.iter().zip(left.iter().chain(right.iter())) {
            assert!(*answer == rule(number) || *answer == Capability::Unknown, "{number}: {answer:?}");
        }
        env.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_check_fails_open_and_caches_nothing() {
        let env = Env::new();
        let source = FakeSource::default();
        *source.fail.lock() = Some(CapabilityError::Throttled);
        let checker = env.checker(&source, 5);
        let numbers: Vec<String> = (0..20).map(|i| format!("+4420{i:07}")).collect();
        let answers = look_up_all(&checker, &numbers).await;
        assert!(answers.iter().all(|a| *a == Capability::Unknown), "{answers:?}");
        // The claims were released: once the provider answers again, the numbers are asked.
        *source.fail.lock() = None;
        let answers = look_up_all(&checker, &numbers).await;
        for (number, answer) in numbers.iter().zip(&answers) {
            assert_eq!(*answer, rule(number));
        }
        assert_eq!(source.asked().len(), 40, "asked again after the failure, not served a cached failure");

        // Redis unreachable: unknown, at once, without asking the provider.
        let dead = sendfleet_redis::RedisPool::from(
            deadpool_redis::Config::from_url("redis://127.0.0.1:1")
                .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                .unwrap(),
        );
        let offline = CapabilityChecker::start(
            "ib-rcs",
            source.clone(),
            dead,
            &env.prefix,
            CheckerSettings {
                window: Duration::from_millis(1),
                ..CheckerSettings::from_config(&Default::default(), 100)
            },
        );
        assert_eq!(offline.lookup("Agent", "+15550000003").await, Capability::Unknown);
        assert_eq!(source.asked().len(), 40);
        env.cleanup().await;
    }
}
