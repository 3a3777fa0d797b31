//! The live feed of an account's committed events, the use case behind the SSE stream.
//!
//! Every event is read from the events table (the same source as webhooks), so the feed
//! and webhooks agree. A feed resumes after a sequence number without gaps, within the
//! last [`RESUME_WINDOW_HOURS`] hours; older events are skipped and a gap says so.

use super::ServiceResult;
use futures::stream::{self, Stream};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use wagate_core::event::{Event, EventType};
use wagate_core::store::Store;
use wagate_core::{AccountId, DeviceUid, time};

/// How far back a feed can resume.
pub const RESUME_WINDOW_HOURS: i64 = 24;
/// Events read per query.
const PAGE: u32 = 200;
/// Longest wait without looking (events committed without a wake-up).
const POLL: Duration = Duration::from_secs(1);

/// What to follow.
#[derive(Debug, Clone, Default)]
pub struct FeedRequest {
    /// Only this device's events (checked to be the account's).
    pub device: Option<DeviceUid>,
    /// Only these types (empty: all).
    pub types: Vec<EventType>,
    /// Resume after this sequence number; `None` starts from now.
    pub resume_after: Option<i64>,
}

/// One item of a feed.
#[derive(Debug, Clone)]
pub enum FeedItem {
    Event(Box<Event>),
    /// Events from this sequence number on were older than the resume window.
    Gap {
        from_seq: i64,
    },
}

struct FeedState {
    store: Arc<dyn Store>,
    account: AccountId,
    device: Option<DeviceUid>,
    types: Vec<EventType>,
    after: i64,
    /// Events older than this are not replayed (the resume window).
    oldest: Option<time::Timestamp>,
    gap_from: Option<i64>,
    queue: VecDeque<Event>,
    wake: watch::Receiver<i64>,
}

/// The live event feed.
#[derive(Clone)]
pub struct EventService {
    /// Loads events and announces their commits (which wake the feeds).
    store: Arc<dyn Store>,
}

impl EventService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The account's events as they are committed, in commit order; never ends.
    pub async fn event_feed(
        &self,
        account: &AccountId,
        req: FeedRequest,
    ) -> ServiceResult<impl Stream<Item = FeedItem> + Send + 'static> {
        if let Some(d) = &req.device {
            super::device_of(self.store.as_ref(), account, d).await?;
        }
        let (after, oldest) = match req.resume_after {
            Some(seq) => (
                seq,
                Some(time::now() - chrono::Duration::hours(RESUME_WINDOW_HOURS)),
            ),
            None => (self.store.last_event_seq().await?, None),
        };
        let state = FeedState {
            store: Arc::clone(&self.store),
            account: account.clone(),
            device: req.device,
            types: req.types,
            after,
            oldest,
            gap_from: None,
            queue: VecDeque::new(),
            wake: self.store.subscribe_commits(),
        };
        Ok(stream::unfold(state, next))
    }
}

async fn next(mut st: FeedState) -> Option<(FeedItem, FeedState)> {
    loop {
        if let Some(e) = st.queue.pop_front() {
            return Some((FeedItem::Event(Box::new(e)), st));
        }
        match st
            .store
            .list_events(st.after, PAGE, Some(&st.account), &st.types)
            .await
        {
            Ok(events) if !events.is_empty() => {
                for e in events {
                    st.after = e.seq;
                    if st.oldest.is_some_and(|o| e.created_at < o) {
                        st.gap_from.get_or_insert(e.seq);
                        continue;
                    }
                    if st.device.as_ref().is_some_and(|d| *d != e.device_uid) {
                        continue;
                    }
                    st.queue.push_back(e);
                }
                if let Some(from_seq) = st.gap_from.take() {
                    return Some((FeedItem::Gap { from_seq }, st));
                }
                continue;
            }
            Ok(_) => {
                // Caught up: the window only applies to the replay.
                st.oldest = None;
            }
            Err(e) => tracing::warn!(error = %e, "event feed could not read events"),
        }
        let _ = tokio::time::timeout(POLL, st.wake.changed()).await;
    }
}
