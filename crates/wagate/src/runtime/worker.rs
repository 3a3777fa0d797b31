//! The send worker of one device: claims due jobs in order, paces them within the
//! device's budgets, hands them to the engine and records the outcome.
//!
//! A job is claimed with a lease (owned by this node) before any I/O and finished
//! after it; a crash in between leaves a lease that expires, so the message is sent again
//! with the same provider id, which WhatsApp shows once. Every write carries the device's
//! fence, so a node that lost the device to another cannot claim or record anything.

use super::{DeviceLive, DeviceRuntime};
use crate::blob::{BlobError, BlobStore};
use crate::config::SendingConfig;
use crate::service::port::Handoff;
use chrono::Duration as ChronoDuration;
use rand::Rng;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wagate_core::device::Device;
use wagate_core::engine::{
    EngineError, EngineSession, MessageContext, OutgoingContent, OutgoingMessage,
};
use wagate_core::lease::Fence;
use wagate_core::message::MessageKind;
use wagate_core::store::{SendJob, Store, StoreError};
use wagate_core::{DeviceUid, time};

/// How long the worker waits before retrying after a store error.
const STORE_RETRY: Duration = Duration::from_secs(1);

pub(super) struct SendWorker {
    pub uid: DeviceUid,
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    pub session: Arc<dyn EngineSession>,
    pub live: Arc<DeviceLive>,
    pub wake: Arc<Notify>,
    pub cancel: CancellationToken,
    pub sending: SendingConfig,
    /// The device lease this node holds: every write carries it, and a write refused
    /// because another node took the device over stops the device here.
    pub fence: Fence,
    pub runtime: Weak<DeviceRuntime>,
}

/// Most jobs claimed at once (pacing off): enough to share commits, small enough that a
/// disconnection mid-batch defers few.
const MAX_BATCH: u32 = 64;

enum Budget {
    Allows(u32),
    WaitFor(Duration),
}

/// Why a claimed job was not taken by the engine.
enum HandOverError {
    /// The message cannot be built (its media is gone): fails for good.
    Unsendable(String),
    Engine(EngineError),
}

enum Step {
    /// Go round again now.
    Continue,
    /// Nothing to do until woken, or until the due time when there is one (a scheduled or
    /// retried job, a lease running out, the budget's next minute). With no due time the
    /// worker has no timer at all: 10,000 idle devices cost no CPU.
    Idle(Option<Duration>),
    Stop,
}

impl SendWorker {
    pub(super) async fn run(self) {
        loop {
            if self.cancel.is_cancelled() {
                break;
            }
            // Registered before the queue is read, so a connection change that happens
            // while `step` runs is not lost (`notify_waiters` keeps no permit). Accepts use
            // `wake`, whose `notify_one` keeps one.
            let connection_changed = self.live.connection_changed.notified();
            tokio::pin!(connection_changed);
            connection_changed.as_mut().enable();
            self.live.worker_rounds.fetch_add(1, Ordering::SeqCst);
            let step = match self.step().await {
                Ok(step) => step,
                Err(StoreError::Fenced) => {
                    tracing::warn!(device.uid = %self.uid, "another node took the device over; stopping it here");
                    if let Some(rt) = self.runtime.upgrade() {
                        rt.lost_device(&self.fence);
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(device.uid = %self.uid, error = %e, "send worker store error; retrying");
                    Step::Idle(Some(STORE_RETRY))
                }
            };
            let due = match step {
                Step::Continue => continue,
                Step::Stop => break,
                Step::Idle(due) => due,
            };
            let idle = due.is_none() && self.live.connected.load(Ordering::SeqCst);
            self.live.worker_idle.store(idle, Ordering::SeqCst);
            let sleep = async {
                match due {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = &mut connection_changed => {}
                _ = sleep => {}
            }
            self.live.worker_idle.store(false, Ordering::SeqCst);
        }
    }

    async fn step(&self) -> Result<Step, StoreError> {
        let device = match self.store.get_device_by_uid(&self.uid).await {
            Ok(d) => d,
            Err(StoreError::NotFound) => return Ok(Step::Stop),
            Err(e) => return Err(e),
        };
        if !self.live.connected.load(Ordering::SeqCst) {
            // Nothing can be sent; the connection change wakes us.
            return Ok(Step::Idle(None));
        }
        let now = time::now();
        let allowance = match self.budget(&device, now).await? {
            Budget::WaitFor(wait) => {
                // Only this worker moves `worker_rounds`, so this is the current round.
                let round = self.live.worker_rounds.load(Ordering::SeqCst);
                self.live
                    .budget_held_at
                    .store(time::millis(now), Ordering::SeqCst);
                self.live.budget_held_round.store(round, Ordering::SeqCst);
                return Ok(Step::Idle(Some(wait)));
            }
            Budget::Allows(n) => n,
        };
        // Without pacing, claim what the budgets allow (up to a bound) in one round trip and
        // record the outcomes together; with pacing, one at a time, so that a lease never
        // has to outlast several human-like pauses.
        let p = device.pacing;
        let batch = if p.max_delay_ms > 0 || p.typing_indicator {
            1
        } else {
            allowance.clamp(1, MAX_BATCH)
        };
        let lease_until = now + ChronoDuration::seconds(self.sending.lease_secs as i64);
        let jobs = self
            .store
            .claim_send_jobs(&self.fence, now, lease_until, batch)
            .await?;
        if jobs.is_empty() {
            // Every job the queue holds has a due time (its run time, or when its lease
            // ends); anything new comes with a wake. Nothing queued: no timer.
            let wait = self
                .store
                .next_send_job_at(&self.uid)
                .await?
                .map(|at| wagate_core::backoff::due_in(at, time::now()));
            return Ok(Step::Idle(wait));
        }
        let mut taken = Vec::with_capacity(jobs.len());
        let mut not_taken = Vec::new();
        for job in jobs {
            // Jobs left claimed here keep their lease until it expires or this process
            // releases it at shutdown; then they are sent again under the same WhatsApp id.
            if self.cancel.is_cancelled() {
                break;
            }
            self.pace(&device, &job).await;
            match self.hand_over(job).await {
                (job, Ok(())) => taken.push(job),
                (job, Err(e)) => not_taken.push(self.record_not_taken(job, e)),
            }
        }
        // Every outcome is recorded concurrently: the store commits them together.
        let (taken, not_taken) = futures::future::join(
            self.record_taken(&taken),
            futures::future::join_all(not_taken),
        )
        .await;
        taken?;
        for result in not_taken {
            result?;
        }
        Ok(Step::Continue)
    }

    /// What the hourly and per-minute budgets allow now: how many more sends, or how long
    /// to wait before another.
    async fn budget(
        &self,
        device: &Device,
        now: wagate_core::time::Timestamp,
    ) -> Result<Budget, StoreError> {
        let usage = self.store.budget_usage(&self.uid, now).await?;
        let minute_left =
            u64::from(device.limits.per_minute).saturating_sub(usage.handed_last_minute);
        let hour_left = u64::from(device.limits.per_hour).saturating_sub(usage.handed_last_hour);
        let left = minute_left.min(hour_left);
        if left == 0 {
            // The counters move by the minute; look again then.
            let jitter = Duration::from_millis(rand::thread_rng().gen_range(0..500));
            let into_minute = (time::millis(now) % 60_000) as u64;
            return Ok(Budget::WaitFor(
                Duration::from_millis(60_000 - into_minute) + jitter,
            ));
        }
        Ok(Budget::Allows(u32::try_from(left).unwrap_or(u32::MAX)))
    }

    /// Human-like pacing: a random pause, and "typing…" before texts when enabled.
    async fn pace(&self, device: &Device, job: &SendJob) {
        let p = device.pacing;
        if p.max_delay_ms > 0 {
            let lo = p.min_delay_ms.min(p.max_delay_ms);
            let ms = rand::thread_rng().gen_range(lo..=p.max_delay_ms);
            tokio::select! {
                _ = self.cancel.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(u64::from(ms))) => {}
            }
        }
        if p.typing_indicator && job.message.kind == MessageKind::Text {
            let chars = job
                .message
                .text
                .as_deref()
                .map(|t| t.chars().count())
                .unwrap_or(0) as u64;
            let typing = Duration::from_millis((chars * 40).clamp(800, 5_000));
            if let Err(e) = self.session.typing(&job.message.to, typing).await {
                tracing::debug!(device.uid = %self.uid, error = %e, "typing indicator failed");
            }
        }
    }

    async fn outgoing(&self, job: &SendJob) -> Result<OutgoingMessage, String> {
        let m = &job.message;
        let missing = |what: &str| format!("a {} message has no {what}", m.kind.as_str());
        let content = match (m.kind, &m.media_id) {
            (MessageKind::Text, _) => OutgoingContent::Text {
                text: m.text.clone().unwrap_or_default(),
            },
            (MessageKind::Template, _) => OutgoingContent::Template(
                m.details
                    .template
                    .clone()
                    .ok_or_else(|| missing("template"))?,
            ),
            (MessageKind::Location, _) => OutgoingContent::Location(
                m.details
                    .location
                    .clone()
                    .ok_or_else(|| missing("location"))?,
            ),
            (MessageKind::Contact, _) if !m.details.contacts.is_empty() => {
                OutgoingContent::Contacts(m.details.contacts.clone())
            }
            (MessageKind::Contact, _) => return Err(missing("contact cards")),
            (MessageKind::Reaction | MessageKind::Edit | MessageKind::Delete, _) => {
                let target = m
                    .details
                    .target
                    .clone()
                    .ok_or_else(|| missing("target message"))?;
                match m.kind {
                    MessageKind::Reaction => OutgoingContent::Reaction {
                        target,
                        emoji: m.details.emoji.clone().unwrap_or_default(),
                    },
                    MessageKind::Edit => OutgoingContent::Edit {
                        target,
                        text: m.text.clone().ok_or_else(|| missing("new text"))?,
                    },
                    _ => OutgoingContent::Delete { target },
                }
            }
            (MessageKind::PollVote, _) => OutgoingContent::PollVote {
                target: m
                    .details
                    .target
                    .clone()
                    .ok_or_else(|| missing("poll voted in"))?,
                poll: m.details.poll.clone().ok_or_else(|| missing("poll"))?,
                options: m.details.vote.clone().unwrap_or_default(),
            },
            (MessageKind::Poll, _) => match &m.details.poll {
                Some(p) if p.secret_bytes().is_some() => OutgoingContent::Poll(p.clone()),
                _ => return Err(missing("poll with its secret")),
            },
            (kind, Some(media_id)) => {
                let media = self
                    .store
                    .get_media(&m.account_id, media_id)
                    .await
                    .map_err(|e| format!("media {media_id} is not available: {e}"))?;
                let data = self.blobs.get(media_id).await.map_err(|e| match e {
                    BlobError::NotFound => format!("the content of media {media_id} is missing"),
                    BlobError::Other(e) => e,
                })?;
                OutgoingContent::Media {
                    kind,
                    data,
                    mime_type: media.mime_type,
                    file_name: media.file_name,
                    caption: m.text.clone(),
                }
            }
            (kind, None) => return Err(format!("a {} message has no media", kind.as_str())),
        };
        Ok(OutgoingMessage {
            id: m.id.clone(),
            provider_message_id: m.provider_message_id.clone(),
            to: m.to.clone(),
            content,
            context: MessageContext {
                reply_to: m.details.reply_to.clone(),
                mentions: m.details.mentions.clone(),
            },
        })
    }

    /// Hands one job to the engine (or finds it cannot be sent) and returns what to record.
    async fn hand_over(&self, job: SendJob) -> (SendJob, Result<(), HandOverError>) {
        let outgoing = match self.outgoing(&job).await {
            Ok(o) => o,
            Err(reason) => return (job, Err(HandOverError::Unsendable(reason))),
        };
        let result = self.session.send(outgoing).await;
        (job, result.map_err(HandOverError::Engine))
    }

    /// Records hand-overs the engine took (one write for them all).
    async fn record_taken(&self, jobs: &[SendJob]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let now = time::now();
        let recheck = now + ChronoDuration::milliseconds(self.sending.ack_timeout_ms as i64);
        let ids: Vec<i64> = jobs.iter().map(|j| j.job_id).collect();
        self.store
            .record_handoff(&self.fence, &ids, now, recheck)
            .await?;
        // Waiters hear `Taken` when the server's ack is committed (the event sink), not
        // here: handed over is not yet "WhatsApp has it".
        Ok(())
    }

    /// Records a hand-over that did not happen: a retry later, or a failure.
    async fn record_not_taken(&self, job: SendJob, error: HandOverError) -> Result<(), StoreError> {
        let message_id = job.message.id.clone();
        let now = time::now();
        match error {
            HandOverError::Unsendable(reason) => {
                self.store
                    .fail_send_job(&self.fence, job.job_id, &reason, now)
                    .await?;
                self.finished(&message_id, Handoff::Failed(reason));
            }
            HandOverError::Engine(e)
                if e.is_retryable() && job.attempt < self.sending.max_attempts =>
            {
                let delay = self.backoff(job.attempt, &e);
                tracing::info!(device.uid = %self.uid, message.id = %message_id, attempt = job.attempt, error = %e, retry_in_ms = delay.as_millis() as u64, "send deferred");
                let run_at = now + ChronoDuration::milliseconds(delay.as_millis() as i64);
                self.store
                    .retry_send_job(&self.fence, job.job_id, run_at, &e.to_string())
                    .await?;
                self.finished(&message_id, Handoff::Deferred(e));
            }
            HandOverError::Engine(e) => {
                let reason = match &e {
                    EngineError::Rejected { reason, .. } => reason.clone(),
                    other => format!("gave up after {} attempts: {other}", job.attempt),
                };
                tracing::info!(device.uid = %self.uid, message.id = %message_id, %reason, "send failed");
                self.store
                    .fail_send_job(&self.fence, job.job_id, &reason, now)
                    .await?;
                self.finished(&message_id, Handoff::Failed(reason));
            }
        }
        Ok(())
    }

    fn finished(&self, message: &wagate_core::MessageId, outcome: Handoff) {
        if let Some(rt) = self.runtime.upgrade() {
            rt.report_handoff(message, outcome);
        }
    }

    /// Exponential backoff with ±20% jitter, honouring the engine's own wait when given.
    fn backoff(&self, attempt: u32, e: &EngineError) -> Duration {
        if let EngineError::RateLimited {
            retry_after: Some(d),
            ..
        } = e
        {
            return *d;
        }
        wagate_core::backoff::delay(
            attempt,
            Duration::from_millis(self.sending.retry_base_ms),
            Duration::from_millis(self.sending.retry_max_ms),
            rand::random(),
        )
    }
}
