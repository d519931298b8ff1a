//! Posting delivery reports back, batched as Infobip does (up to 100 results per POST),
//! retried while the receiver is unavailable.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

const BATCH: usize = 100;
const BATCH_WINDOW: Duration = Duration::from_millis(25);
const MAX_POSTS_IN_FLIGHT: usize = 16;
const MAX_TRIES: u32 = 30;

/// One report waiting to be posted.
pub(crate) struct PendingReport {
    pub url: String,
    /// The same report also goes to these URLs, at the same time.
    pub duplicates: Vec<String>,
    pub result: serde_json::Value,
}

/// The background report poster.
pub(crate) struct DlrSender {
    queue: mpsc::UnboundedSender<PendingReport>,
    delivered: Arc<AtomicU64>,
}

impl DlrSender {
    pub fn start(shutdown: CancellationToken) -> DlrSender {
        let (queue, receiver) = mpsc::unbounded_channel();
        let delivered = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(receiver, delivered.clone(), shutdown));
        DlrSender { queue, delivered }
    }

    /// Queues a report to be posted after `delay`.
    pub fn submit(&self, report: PendingReport, delay: Duration) {
        if delay.is_zero() {
            // The receiver lives as long as the runtime; a send error means shutdown.
            drop(self.queue.send(report));
        } else {
            let queue = self.queue.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                drop(queue.send(report));
            });
        }
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}

async fn run(
    mut receiver: mpsc::UnboundedReceiver<PendingReport>,
    delivered: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
    let permits = Arc::new(Semaphore::new(MAX_POSTS_IN_FLIGHT));
    let mut batches: HashMap<String, (Vec<String>, Vec<serde_json::Value>)> = HashMap::new();
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => return,
            report = receiver.recv() => match report { Some(r) => r, None => return },
        };
        let window_end = tokio::time::Instant::now() + BATCH_WINDOW;
        let mut pending = vec![first];
        while pending.len() < BATCH * 4 {
            match tokio::time::timeout_at(window_end, receiver.recv()).await {
                Ok(Some(report)) => pending.push(report),
                _ => break,
            }
        }
        for report in pending {
            let batch = batches.entry(report.url).or_insert_with(|| (report.duplicates, Vec::new()));
            batch.1.push(report.result);
        }
        for (url, (duplicates, results)) in batches.drain() {
            for chunk in results.chunks(BATCH) {
                let body = serde_json::json!({ "results": chunk });
                let count = chunk.len() as u64;
                let client = client.clone();
                let url = url.clone();
                let duplicates = duplicates.clone();
                let delivered = delivered.clone();
                let permit = permits.clone().acquire_owned().await;
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let copies = duplicates.iter().map(|copy| post_with_retries(&client, copy, &body, &shutdown));
                    let (delivered_ok, _) = futures_util::future::join(
                        post_with_retries(&client, &url, &body, &shutdown),
                        futures_util::future::join_all(copies),
                    )
                    .await;
                    if delivered_ok {
                        delivered.fetch_add(count, Ordering::Relaxed);
                    }
                });
            }
        }
    }
}

async fn post_with_retries(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    shutdown: &CancellationToken,
) -> bool {
    let mut delay = Duration::from_millis(100);
    for _ in 0..MAX_TRIES {
        match client.post(url).json(body).send().await {
            Ok(response) if response.status().is_success() => return true,
            Ok(response) if response.status().is_client_error() && response.status().as_u16() != 429 => {
                tracing::warn!(status = response.status().as_u16(), "delivery report refused; not retrying");
                return false;
            }
            _ => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    false
}
