//! Closed-loop load: `c` workers each send one request, wait for the reply, and send the
//! next, for a fixed time. Latencies go into an HDR histogram (microseconds); accepted
//! sends per second are counted per run.

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where the load goes.
#[derive(Clone)]
pub struct Target {
    /// Where to send; client `i` uses `urls[i % len]` (the nodes of a cluster).
    pub urls: Vec<String>,
    pub key: Option<String>,
    /// Sender devices; requests go round-robin across them.
    pub devices: Vec<String>,
}

impl Target {
    fn body(&self, n: usize) -> Value {
        let device = self
            .devices
            .get(n % self.devices.len().max(1))
            .cloned()
            .unwrap_or_default();
        json!({
            "deviceUid": device,
            "to": crate::server::random_recipient(),
            "text": format!("{{Hi|Hello}} from the benchmark, message {n}"),
        })
    }
}

/// One concurrency level's result.
#[derive(Debug)]
pub struct LevelResult {
    pub concurrency: usize,
    /// Accepted (2xx) sends per second, one entry per measured run.
    pub runs: Vec<f64>,
    /// Latency of every request of the measured runs, in microseconds.
    pub hist: Histogram<u64>,
    /// Replies that were not 2xx, by status (0 = transport error).
    pub failures: BTreeMap<u16, u64>,
    pub accepted: u64,
}

impl LevelResult {
    pub fn median_rate(&self) -> f64 {
        let mut r = self.runs.clone();
        r.sort_by(f64::total_cmp);
        r.get(r.len() / 2).copied().unwrap_or(0.0)
    }
    pub fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

struct RunOutcome {
    accepted: u64,
    hist: Histogram<u64>,
    failures: BTreeMap<u16, u64>,
    elapsed: Duration,
}

fn new_hist() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant digits; the bounds are constants, so this cannot fail.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

async fn run_once(
    client: &reqwest::Client,
    target: &Target,
    concurrency: usize,
    duration: Duration,
    seq: &Arc<AtomicUsize>,
) -> RunOutcome {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        let client = client.clone();
        let target = target.clone();
        let url = target.urls[i % target.urls.len().max(1)].clone();
        let seq = Arc::clone(seq);
        tasks.push(tokio::spawn(async move {
            let mut hist = new_hist();
            let mut accepted = 0u64;
            let mut failures: BTreeMap<u16, u64> = BTreeMap::new();
            while Instant::now() < deadline {
                let body = target.body(seq.fetch_add(1, Ordering::Relaxed));
                let mut req = client.post(&url).json(&body);
                if let Some(k) = &target.key {
                    req = req.header("X-API-Key", k);
                }
                let t0 = Instant::now();
                let status = match req.send().await {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        // Read the whole reply: the request is done when its body is.
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                let us = t0.elapsed().as_micros().clamp(1, 60_000_000) as u64;
                let _ = hist.record(us);
                if (200..300).contains(&status) {
                    accepted += 1;
                } else {
                    *failures.entry(status).or_default() += 1;
                    if status == 0 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (accepted, hist, failures)
        }));
    }
    let mut out = RunOutcome {
        accepted: 0,
        hist: new_hist(),
        failures: BTreeMap::new(),
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        if let Ok((a, h, f)) = t.await {
            out.accepted += a;
            let _ = out.hist.add(&h);
            for (k, v) in f {
                *out.failures.entry(k).or_default() += v;
            }
        }
    }
    out.elapsed = start.elapsed();
    out
}

/// Warm-up (discarded), then `runs` measured runs at one concurrency level.
pub async fn level(
    target: &Target,
    concurrency: usize,
    warmup: Duration,
    run: Duration,
    runs: usize,
) -> LevelResult {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default();
    let seq = Arc::new(AtomicUsize::new(0));
    if !warmup.is_zero() {
        run_once(&client, target, concurrency, warmup, &seq).await;
    }
    let mut result = LevelResult {
        concurrency,
        runs: Vec::new(),
        hist: new_hist(),
        failures: BTreeMap::new(),
        accepted: 0,
    };
    for _ in 0..runs {
        let o = run_once(&client, target, concurrency, run, &seq).await;
        result
            .runs
            .push(o.accepted as f64 / o.elapsed.as_secs_f64().max(1e-9));
        result.accepted += o.accepted;
        let _ = result.hist.add(&o.hist);
        for (k, v) in o.failures {
            *result.failures.entry(k).or_default() += v;
        }
    }
    result
}
