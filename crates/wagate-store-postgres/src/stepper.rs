//! The status-step queue: `advance_message_status` calls of this process run in the order
//! they were made, the ones queued together in one transaction.
//!
//! Receipts for one message (sent, delivered, read) arrive in a burst and must apply in
//! the order the engine reported them; as separate transactions racing for the
//! message's row lock they could apply in any order, and a late `sent` would then be
//! dropped as a step backwards. So each call is queued the moment it is made, and one
//! task runs the queue: everything waiting at that moment in one transaction, in order
//! ([`crate::advance`] carries each message's state from one step to the next). That is
//! also what keeps a burst of receipts cheap: one round trip per batch instead of five
//! per step, as SQLite's writer does. Steps made by other nodes take turns with these on
//! the messages' row locks. A batch that fails as a whole (a dropped connection) is run
//! again one step at a time, so only a step that fails on its own fails.

use crate::advance::{AdvanceRequest, Advanced, advance};
use crate::commits::Commits;
use crate::error::map_sqlx;
use sqlx::PgPool;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use wagate_core::message::Message;
use wagate_core::store::{StoreError, StoreResult};

/// Most steps in one transaction.
const MAX_BATCH: usize = 256;

struct Queued {
    request: AdvanceRequest,
    reply: oneshot::Sender<StoreResult<Option<Message>>>,
}

/// The handle the store queues steps through; the task ends with the last handle.
pub(crate) struct Stepper {
    tx: mpsc::UnboundedSender<Queued>,
}

impl Stepper {
    pub(crate) fn start(pool: PgPool, commits: Arc<Commits>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, commits, rx));
        Self { tx }
    }

    /// Queues the step at once (before the first await, so calls keep their order) and
    /// waits for its commit.
    pub(crate) async fn step(&self, request: AdvanceRequest) -> StoreResult<Option<Message>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Queued { request, reply })
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the store is closed".into())
}

async fn run(pool: PgPool, commits: Arc<Commits>, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) => break,
            }
        }
        let queued = std::mem::take(&mut batch);
        let requests: Vec<AdvanceRequest> = queued.iter().map(|q| q.request.clone()).collect();
        match transaction(&pool, &commits, &requests).await {
            Ok(advanced) => {
                for (q, result) in queued.into_iter().zip(advanced.results) {
                    // The caller may have given up waiting; its step stands anyway.
                    let _ = q.reply.send(result);
                }
            }
            Err(e) if queued.len() == 1 => {
                for q in queued {
                    let _ = q.reply.send(Err(e.clone()));
                }
            }
            Err(_) => {
                for q in queued {
                    let result = transaction(&pool, &commits, std::slice::from_ref(&q.request))
                        .await
                        .and_then(|a| {
                            a.results
                                .into_iter()
                                .next()
                                .unwrap_or(Err(StoreError::NotFound))
                        });
                    let _ = q.reply.send(result);
                }
            }
        }
    }
}

/// Runs steps in one transaction, committed (and announced) if any moved a message.
async fn transaction(
    pool: &PgPool,
    commits: &Commits,
    requests: &[AdvanceRequest],
) -> StoreResult<Advanced> {
    let mut tx = pool.begin().await.map_err(map_sqlx)?;
    let advanced = advance(&mut tx, requests).await?;
    if let Some(seq) = advanced.last_seq {
        tx.commit().await.map_err(map_sqlx)?;
        commits.publish(seq);
    }
    Ok(advanced)
}
