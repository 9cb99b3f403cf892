//! The server's counters, shown at `/metrics` in Prometheus' text format (version 0.0.4:
//! `# HELP` and `# TYPE` lines, then `name value`).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub not_found: AtomicU64,
    pub failures: AtomicU64,
    pub bytes: AtomicU64,
    pub resolutions: AtomicU64,
    pub resolutions_in_flight: AtomicU64,
    resolution_micros: AtomicU64,
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn resolved(&self, took: Duration) {
        Metrics::add(&self.resolution_micros, took.as_micros() as u64);
    }

    /// The counters in Prometheus' text format.
    pub(crate) fn render(&self) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP swh_bridge_{name} {help}\n# TYPE swh_bridge_{name} {kind}\nswh_bridge_{name} {value}"
            );
        };
        metric(
            "requests_total",
            "counter",
            "Mirror requests (GET and HEAD on a hash).",
            get(&self.requests).to_string(),
        );
        metric("cache_hits_total", "counter", "Requests answered from the cache.", get(&self.hits).to_string());
        metric("cache_misses_total", "counter", "Requests that had to be resolved.", get(&self.misses).to_string());
        metric("not_found_total", "counter", "Requests answered 404.", get(&self.not_found).to_string());
        metric(
            "failures_total",
            "counter",
            "Requests answered 502 (the archive failed).",
            get(&self.failures).to_string(),
        );
        metric("bytes_sent_total", "counter", "Bytes of verified files sent.", get(&self.bytes).to_string());
        metric(
            "resolutions_total",
            "counter",
            "Fetches run (one per hash, however many asked).",
            get(&self.resolutions).to_string(),
        );
        metric("resolutions_in_flight", "gauge", "Fetches running now.", get(&self.resolutions_in_flight).to_string());
        let seconds = get(&self.resolution_micros) as f64 / 1e6;
        metric("resolution_seconds_total", "counter", "Time spent fetching, summed.", format!("{seconds:.6}"));
        out
    }
}
