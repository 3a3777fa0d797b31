//! Webhook delivery: turns committed events into signed POSTs that survive failures and
//! restarts.
//!
//! The store fans events out into a delivery outbox in the same transaction that moves
//! its cursor, so each event becomes its deliveries exactly once. The dispatcher then
//! claims due deliveries with a lease (each destination's `per_destination` oldest only:
//! a bounded window of requests in flight per destination, started in event order; the
//! longest-waiting first, so a device with a backlog of thousands cannot starve the
//! others), POSTs them on tasks of their
//! own under a global concurrency bound (a slow receiver never holds up sending or other
//! receivers), and records every attempt with its next due time. A restart continues
//! from the stored schedule; leases are released on shutdown and at startup.

pub mod client;
pub mod payload;
pub mod signature;

use crate::app::Resources;
use crate::config::WebhooksConfig;
use payload::MediaLinker;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use wagate_core::store::Store;
use wagate_core::time::{self, Timestamp};
use wagate_core::webhook::{AttemptRecord, ClaimedDelivery, DeliveryNext};

/// Events fanned out per transaction.
const FAN_OUT_BATCH: u32 = 500;
/// Longest the dispatcher sleeps without looking (events another process committed,
/// clock changes).
const MAX_IDLE: Duration = Duration::from_secs(1);

/// The running dispatcher.
pub struct Dispatcher {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

struct Ctx {
    /// The owner on the delivery leases this dispatcher takes.
    node_id: String,
    store: Arc<dyn Store>,
    clients: client::Clients,
    config: WebhooksConfig,
    allow_private: bool,
    links: MediaLinker,
}

impl Dispatcher {
    /// Starts delivering. `base_url` is where receivers reach this server (media links).
    pub async fn start(services: &Resources, base_url: String) -> anyhow::Result<Self> {
        let key = services.keys.media_link.clone();
        // Leases this node still holds are its crashed predecessor's; other nodes' are
        // left to expire.
        services.store.release_deliveries(&services.node_id).await?;
        let config = services.config.webhooks.clone();
        let ctx = Arc::new(Ctx {
            node_id: services.node_id.clone(),
            store: Arc::clone(&services.store),
            clients: client::Clients::default(),
            allow_private: services.config.allow_private_urls,
            links: MediaLinker {
                base_url,
                key,
                ttl_secs: i64::try_from(config.media_link_ttl_secs).unwrap_or(i64::MAX),
            },
            config,
        });
        let cancel = CancellationToken::new();
        // Woken by the store after every commit that wrote events (or made a delivery due).
        let events = services.store.subscribe_commits();
        let task = tokio::spawn(run(ctx, events, cancel.clone()));
        Ok(Self { cancel, task })
    }

    /// Stops: attempts in flight are abandoned (they run again after the next start, with
    /// the same event id) and this node's leases are released.
    pub async fn stop(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "webhook dispatcher task failed");
        }
    }
}

fn lease(config: &WebhooksConfig) -> chrono::Duration {
    // Long enough for the request and recording its outcome.
    chrono::Duration::milliseconds(i64::try_from(config.timeout_ms).unwrap_or(i64::MAX / 2))
        + chrono::Duration::seconds(30)
}

async fn run(
    ctx: Arc<Ctx>,
    mut events: tokio::sync::watch::Receiver<i64>,
    cancel: CancellationToken,
) {
    let mut inflight: JoinSet<()> = JoinSet::new();
    let concurrency = ctx.config.concurrency.max(1);
    let window = ctx.config.per_destination.max(1);
    let mut events_open = true;
    // Whether events may have been committed since the last fan-out: set by the store's
    // wake-up and by the idle timer, not by finished requests (which commit no events).
    let mut fan_out_due = true;
    while !cancel.is_cancelled() {
        while fan_out_due {
            match ctx.store.fan_out_events(FAN_OUT_BATCH, time::now()).await {
                Ok(n) if n == FAN_OUT_BATCH => continue,
                Ok(_) => fan_out_due = false,
                Err(e) => {
                    tracing::warn!(error = %e, "could not fan out events to webhooks");
                    fan_out_due = false;
                }
            }
        }
        let free = concurrency.saturating_sub(inflight.len());
        let mut wait = MAX_IDLE;
        if free > 0 {
            let now = time::now();
            let limit = u32::try_from(free).unwrap_or(u32::MAX);
            match ctx
                .store
                .claim_deliveries(&ctx.node_id, now, now + lease(&ctx.config), limit, window)
                .await
            {
                Ok(claimed) => {
                    // Nothing due now: sleep until something will be. With requests in
                    // flight, their completions wake the loop (and claim) soon enough.
                    if claimed.is_empty() && inflight.is_empty() {
                        wait = next_due_in(&ctx, window).await;
                    }
                    for c in claimed {
                        inflight.spawn(attempt(Arc::clone(&ctx), c));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not claim webhook deliveries"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            changed = events.changed(), if events_open => {
                // The store is closed; the idle timer keeps the dispatcher going.
                if changed.is_err() { events_open = false; }
                fan_out_due = true;
            }
            Some(_) = inflight.join_next(), if !inflight.is_empty() => {
                // Whatever else finished meanwhile shares the next claim.
                while inflight.try_join_next().is_some() {}
            }
            _ = tokio::time::sleep(wait) => fan_out_due = true,
        }
    }
    inflight.shutdown().await;
    if let Err(e) = ctx.store.release_deliveries(&ctx.node_id).await {
        tracing::warn!(error = %e, "could not release webhook leases");
    }
}

/// How long until the next delivery becomes claimable (at most [`MAX_IDLE`]).
async fn next_due_in(ctx: &Ctx, window: u32) -> Duration {
    match ctx.store.next_delivery_at(window).await {
        Ok(Some(at)) => wagate_core::backoff::due_in(at, time::now()).min(MAX_IDLE),
        _ => MAX_IDLE,
    }
}

/// The delay before attempt `attempt + 1`: exponential from the base, ±20% jitter, never
/// below what the receiver asked for with `Retry-After` (itself capped).
pub fn backoff(config: &WebhooksConfig, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let delay = wagate_core::backoff::delay(
        attempt,
        Duration::from_millis(config.backoff_base_ms),
        Duration::from_millis(config.backoff_max_ms),
        rand::random(),
    );
    let most = Duration::from_secs(config.retry_after_max_secs);
    wagate_core::backoff::at_least_asked(delay, retry_after, most)
}

fn after(at: Timestamp, d: Duration) -> Timestamp {
    at + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

async fn attempt(ctx: Arc<Ctx>, c: ClaimedDelivery) {
    let event_type = c.event.data.event_type();
    let target = c.config.as_ref().and_then(|cfg| {
        let url = cfg.url(c.endpoint)?;
        cfg.events(c.endpoint)
            .contains(&event_type)
            .then(|| (url.to_owned(), cfg))
    });
    let now = time::now();
    let Some((url, cfg)) = target else {
        // The destination was removed or no longer wants this event since fan-out.
        let record = AttemptRecord {
            delivery_id: c.delivery_id,
            owner: ctx.node_id.clone(),
            attempt: c.attempt,
            url: String::new(),
            success: false,
            status_code: None,
            latency_ms: 0,
            error: None,
            response_snippet: None,
            at: now,
        };
        finish(&ctx, &record, DeliveryNext::Cancelled).await;
        return;
    };
    let body = match payload::render(&c.event, c.endpoint, &ctx.links) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, event.id = %c.event.id, "could not render a webhook");
            return;
        }
    };
    let msg_id = c.event.id.to_string();
    let ts = now.timestamp();
    let headers = [
        ("webhook-id", msg_id.clone()),
        ("webhook-timestamp", ts.to_string()),
        (
            "webhook-signature",
            signature::header(&cfg.signing_secrets(now), &msg_id, ts, &body),
        ),
    ];
    let outcome = client::post(
        &ctx.clients,
        &url,
        &headers,
        body,
        Duration::from_millis(ctx.config.timeout_ms),
        ctx.allow_private,
    )
    .await;
    let done = time::now();
    let next = if outcome.success() {
        DeliveryNext::Succeeded
    } else if c.attempt >= ctx.config.attempts.max(1) {
        DeliveryNext::Failed
    } else {
        DeliveryNext::RetryAt(after(
            done,
            backoff(&ctx.config, c.attempt, outcome.retry_after),
        ))
    };
    let error = outcome
        .error
        .clone()
        .or_else(|| (!outcome.success()).then(|| format!("HTTP {}", outcome.status.unwrap_or(0))));
    tracing::debug!(event.id = %msg_id, delivery.id = c.delivery_id, attempt = c.attempt,
        status = ?outcome.status, error = ?error, "webhook attempt");
    let record = AttemptRecord {
        delivery_id: c.delivery_id,
        owner: ctx.node_id.clone(),
        attempt: c.attempt,
        url,
        success: outcome.success(),
        status_code: outcome.status,
        latency_ms: outcome.latency_ms,
        error,
        response_snippet: outcome.snippet,
        at: done,
    };
    finish(&ctx, &record, next).await;
}

/// Records the outcome, retrying a busy store briefly: losing the record would only mean
/// the attempt runs again once its lease expires, but the history would miss it.
async fn finish(ctx: &Ctx, record: &AttemptRecord, next: DeliveryNext) {
    for delay in [50u64, 200, 1_000] {
        match ctx.store.finish_attempt(record, next).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, delivery.id = record.delivery_id, "could not record a webhook attempt");
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        let c = WebhooksConfig::default();
        for _ in 0..50 {
            let d1 = backoff(&c, 1, None).as_millis();
            let d2 = backoff(&c, 2, None).as_millis();
            assert!((800..=1200).contains(&d1), "{d1}");
            assert!((1600..=2400).contains(&d2), "{d2}");
        }
        assert_eq!(
            backoff(&c, 1, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        let capped = backoff(&c, 1, Some(Duration::from_secs(1_000_000)));
        assert_eq!(capped, Duration::from_secs(c.retry_after_max_secs));
    }
}
