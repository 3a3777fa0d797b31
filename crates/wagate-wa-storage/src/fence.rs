//! Fencing of protocol-state writes by a takeover epoch (issue 15, point 3).
//!
//! whatsapp-rust caches Signal state and writes it back later, which is only safe while a
//! single node drives the device. When a node is paused past its lease (GC, SIGSTOP,
//! network cut) and another takes the device over, the paused node must not write once it
//! wakes up: it would roll ratchets back and make later messages undecryptable.
//!
//! `wa_device_owner(device_key, epoch)` holds the epoch of the current owner. A
//! [`PgBackend`](crate::PgBackend) built [`with_fence`](crate::PgBackend::with_fence) runs
//! every write in a transaction that first reads that row `FOR SHARE` and refuses the write
//! unless the epoch is still its own. The shared lock also makes a takeover (which updates
//! the row) wait for writes already under way, so no write of the old owner lands after
//! the new epoch is visible. The lease itself (owner, expiry, renewal) is the job of the
//! main PostgreSQL store; it only has to bump the epoch through [`Fence::take_over`] or an
//! equivalent statement on `wa_device_owner` in the same transaction as the takeover.

use sqlx::PgPool;

/// The epoch a node got when it took a device over. Writes carrying an older epoch fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub epoch: i64,
}

impl Fence {
    /// Take `device_key` over: raise its epoch by one (1 on first ownership) and return the
    /// fence that now, and only now, may write its protocol state.
    pub async fn take_over(pool: &PgPool, device_key: &str) -> Result<Fence, sqlx::Error> {
        let epoch: i64 = sqlx::query_scalar(
            "INSERT INTO wa_device_owner (device_key, epoch) VALUES ($1, 1)
             ON CONFLICT (device_key) DO UPDATE SET epoch = wa_device_owner.epoch + 1
             RETURNING epoch",
        )
        .bind(device_key)
        .fetch_one(pool)
        .await?;
        Ok(Fence { epoch })
    }

    /// Whether `epoch` is still the device's current one: a node checks this before it
    /// connects the device to WhatsApp, so that a node overtaken while it was paused does
    /// not log in again and knock the new holder's connection off.
    pub async fn is_current(
        pool: &PgPool,
        device_key: &str,
        epoch: i64,
    ) -> Result<bool, sqlx::Error> {
        let current: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM wa_device_owner WHERE device_key = $1")
                .bind(device_key)
                .fetch_optional(pool)
                .await?;
        Ok(current == Some(epoch))
    }

    /// Records `epoch`, an epoch handed out elsewhere (wagate's device lease, which owns
    /// the numbering), as the device's current one, unless a newer one is recorded: the
    /// node that took the device's lease calls this before it loads any protocol state,
    /// so every write of an older epoch fails from then on. `None` when a newer epoch is
    /// already recorded: this node was overtaken and must not drive the device.
    pub async fn claim(
        pool: &PgPool,
        device_key: &str,
        epoch: i64,
    ) -> Result<Option<Fence>, sqlx::Error> {
        let current: i64 = sqlx::query_scalar(
            "INSERT INTO wa_device_owner (device_key, epoch) VALUES ($1, $2)
             ON CONFLICT (device_key) DO UPDATE
             SET epoch = GREATEST(wa_device_owner.epoch, EXCLUDED.epoch)
             RETURNING epoch",
        )
        .bind(device_key)
        .bind(epoch)
        .fetch_one(pool)
        .await?;
        Ok((current == epoch).then_some(Fence { epoch }))
    }
}
