//! What the mock received.

use std::{
    collections::{BTreeMap, HashMap},
    sync::atomic::{AtomicU64, Ordering},
};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// One request as received.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Received {
    /// Arrival time, microseconds since the epoch (before any simulated latency).
    pub at_us: i64,
    /// When the answer was sent, microseconds since the epoch (after the latency): with
    /// `at_us`, the interval the request was in flight at the provider.
    #[serde(default)]
    pub answered_us: i64,
    /// Request path.
    pub path: String,
    /// HTTP method.
    #[serde(default)]
    pub method: String,
    /// Every request header, names lower-cased (a repeated header keeps its last value).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The status the mock answered.
    pub status: u16,
    /// Message ids of the request's destinations.
    pub message_ids: Vec<String>,
    /// The JSON body (when `record_bodies`).
    pub body: Option<serde_json::Value>,
}

/// Counters and timings.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Stats {
    /// Requests received, all paths.
    pub requests: u64,
    /// Answers by HTTP status.
    pub by_status: BTreeMap<u16, u64>,
    /// Send requests answered 2xx.
    pub accepted: u64,
    /// Message ids accepted more than once (duplicate sends).
    pub duplicate_message_ids: u64,
    /// Arrival time of every send request, microseconds since the epoch, in order.
    pub arrivals_us: Vec<i64>,
}

/// What the capability endpoint was asked.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct CapabilityStats {
    /// Capability queries answered 200.
    pub queries: u64,
    /// Capability queries refused (401, 400, 429).
    pub refused: u64,
    /// Numbers asked in answered queries, repeats included.
    pub numbers: u64,
    /// The most numbers in one query.
    pub largest_query: u64,
    /// Distinct numbers asked.
    pub distinct_numbers: u64,
    /// Distinct numbers asked more than once.
    pub numbers_asked_again: u64,
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    by_status: BTreeMap<u16, u64>,
    arrivals_us: Vec<i64>,
    accepted_ids: HashMap<String, u32>,
    duplicates: u64,
    capability: CapabilityStats,
    capability_asked: HashMap<String, u32>,
}

/// The mock's memory.
#[derive(Default)]
pub(crate) struct Recorder {
    inner: Mutex<Inner>,
    accepted: AtomicU64,
}

impl Recorder {
    pub fn record(&self, received: Received, keep: bool) {
        let mut inner = self.inner.lock();
        *inner.by_status.entry(received.status).or_default() += 1;
        inner.arrivals_us.push(received.at_us);
        if (200..300).contains(&received.status) {
            self.accepted.fetch_add(1, Ordering::Relaxed);
            for id in &received.message_ids {
                let seen = inner.accepted_ids.entry(id.clone()).or_default();
                *seen += 1;
                if *seen > 1 {
                    inner.duplicates += 1;
                }
            }
        }
        if keep {
            inner.received.push(received);
        } else {
            inner.received.push(Received { body: None, ..received });
        }
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn counts(&self) -> (u64, u64) {
        (self.inner.lock().received.len() as u64, self.accepted())
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().received.clone()
    }

    pub fn stats(&self) -> Stats {
        let inner = self.inner.lock();
        Stats {
            requests: inner.received.len() as u64,
            by_status: inner.by_status.clone(),
            accepted: self.accepted(),
            duplicate_message_ids: inner.duplicates,
            arrivals_us: inner.arrivals_us.clone(),
        }
    }

    /// Records a capability query: the numbers of an answered one, or a refusal.
    pub fn record_capability(&self, numbers: Option<&[String]>) {
        let mut inner = self.inner.lock();
        let Some(numbers) = numbers else {
            inner.capability.refused += 1;
            return;
        };
        inner.capability.queries += 1;
        inner.capability.numbers += numbers.len() as u64;
        inner.capability.largest_query = inner.capability.largest_query.max(numbers.len() as u64);
        for number in numbers {
            let asked = inner.capability_asked.entry(number.clone()).or_default();
            *asked += 1;
            let asked = *asked;
            if asked == 1 {
                inner.capability.distinct_numbers += 1;
            } else if asked == 2 {
                inner.capability.numbers_asked_again += 1;
            }
        }
    }

    pub fn capability(&self) -> CapabilityStats {
        self.inner.lock().capability.clone()
    }

    pub fn reset(&self) {
        *self.inner.lock() = Inner::default();
        self.accepted.store(0, Ordering::Relaxed);
    }
}

/// The most requests that were in flight at the provider at once: the largest overlap
/// of the received requests' `[at_us, answered_us)` intervals.
pub fn max_in_flight(received: &[Received]) -> usize {
    let mut edges: Vec<(i64, i32)> = Vec::with_capacity(received.len() * 2);
    for request in received {
        edges.push((request.at_us, 1));
        edges.push((request.answered_us.max(request.at_us), -1));
    }
    // An answer at the same microsecond as an arrival ends first.
    edges.sort_unstable();
    let (mut now, mut max) = (0_i32, 0_i32);
    for (_, step) in edges {
        now += step;
        max = max.max(now);
    }
    max.max(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(at_us: i64, answered_us: i64) -> Received {
        Received {
            at_us,
            answered_us,
            path: "/p".into(),
            method: "POST".into(),
            headers: BTreeMap::new(),
            authorization: None,
            status: 200,
            message_ids: vec![],
            body: None,
        }
    }

    #[test]
    fn overlap_counts_intervals_open_at_once_and_back_to_back_ones_do_not_overlap() {
        let received = [request(0, 10), request(5, 15), request(9, 12), request(15, 20), request(20, 30)];
        assert_eq!(max_in_flight(&received), 3);
        assert_eq!(max_in_flight(&[request(0, 10), request(10, 20)]), 1);
        assert_eq!(max_in_flight(&[]), 0);
    }
}
