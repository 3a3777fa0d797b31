//! Moving a device's protocol state out of the per-device SQLite file whatsapp-rust's own
//! store kept (`<uid>.db`, wagate before issue 15) into another [`Backend`] (wagate's
//! database), once, so existing installations keep their linked devices.
//!
//! Values are read through whatsapp-rust's own store, so its encodings stay its business;
//! only the keys to ask for (and plain columns the trait has no getter for) are read from
//! its tables directly. Every write is an upsert, so an import cut short (a crash) is
//! simply run again: the caller retires the file only after [`import_file`] succeeded.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::store::traits::Backend;
use whatsapp_rust::store::{SqliteStore, SqliteStoreConfig};
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::traits::{
    AppSyncStore, DeviceStore, MsgSecretEntry, MsgSecretStore, ProtocolStore, SignalStore,
};

/// What an import moved, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Imported {
    pub device: bool,
    pub sessions: usize,
    pub identities: usize,
    pub prekeys: usize,
    pub other_rows: usize,
}

fn failed(what: &str, e: impl std::fmt::Display) -> String {
    format!("importing {what}: {e}")
}

/// Copies everything whatsapp-rust's SQLite store at `path` holds for its device into
/// `into`. The file is left as it is.
pub async fn import_file(path: &Path, into: &dyn Backend) -> Result<Imported, String> {
    let url = path
        .to_str()
        .ok_or_else(|| format!("{} is not valid UTF-8", path.display()))?;
    let old = SqliteStore::with_config(url, SqliteStoreConfig::default())
        .await
        .map_err(|e| failed("opening the file", e))?;
    let dev = old.device_id();
    let mut raw = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .connect()
        .await
        .map_err(|e| failed("reading the file", e))?;
    let result = copy(&old, dev, &mut raw, into).await;
    // Fold the WAL into the file, so the retired file is complete on its own.
    let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut raw)
        .await;
    let _ = raw.close().await;
    result
}

async fn keys(conn: &mut SqliteConnection, sql: &str, dev: i32) -> Result<Vec<String>, String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(dev)
        .fetch_all(conn)
        .await
        .map_err(|e| failed(sql, e))
}

async fn copy(
    old: &SqliteStore,
    dev: i32,
    raw: &mut SqliteConnection,
    into: &dyn Backend,
) -> Result<Imported, String> {
    let mut done = Imported::default();
    let e = |what: &'static str| {
        move |err: whatsapp_rust::wacore::store::error::StoreError| failed(what, err)
    };

    if let Some(device) = old.load().await.map_err(e("the device"))? {
        into.save(&device).await.map_err(e("the device"))?;
        done.device = true;
    }

    let mut identities = Vec::new();
    for address in keys(
        raw,
        "SELECT address FROM identities WHERE device_id = ?",
        dev,
    )
    .await?
    {
        if let Some(key) = old.load_identity(&address).await.map_err(e("identities"))? {
            identities.push((Arc::<str>::from(address), key));
        }
    }
    into.put_identities_batch(&identities)
        .await
        .map_err(e("identities"))?;
    done.identities = identities.len();

    let mut sessions = Vec::new();
    for address in keys(raw, "SELECT address FROM sessions WHERE device_id = ?", dev).await? {
        if let Some(record) = old.get_session(&address).await.map_err(e("sessions"))? {
            sessions.push((Arc::<str>::from(address), record));
        }
    }
    into.put_sessions_batch(&sessions)
        .await
        .map_err(e("sessions"))?;
    done.sessions = sessions.len();

    let prekeys: Vec<(i64, bool)> =
        sqlx::query_as("SELECT id, uploaded FROM prekeys WHERE device_id = ? ORDER BY id")
            .bind(dev)
            .fetch_all(&mut *raw)
            .await
            .map_err(|err| failed("prekeys", err))?;
    let mut by_flag: BTreeMap<bool, Vec<(u32, Bytes)>> = BTreeMap::new();
    for (id, uploaded) in prekeys {
        let id = u32::try_from(id).map_err(|err| failed("prekeys", err))?;
        if let Some(record) = old.load_prekey(id).await.map_err(e("prekeys"))? {
            by_flag.entry(uploaded).or_default().push((id, record));
        }
    }
    for (uploaded, keys) in &by_flag {
        into.store_prekeys_batch(keys, *uploaded)
            .await
            .map_err(e("prekeys"))?;
        done.prekeys += keys.len();
    }

    for (id, record) in old
        .load_all_signed_prekeys()
        .await
        .map_err(e("signed prekeys"))?
    {
        into.store_signed_prekey(id, &record)
            .await
            .map_err(e("signed prekeys"))?;
        done.other_rows += 1;
    }

    let mut sender_keys = Vec::new();
    for address in keys(
        raw,
        "SELECT address FROM sender_keys WHERE device_id = ?",
        dev,
    )
    .await?
    {
        if let Some(record) = old
            .get_sender_key(&address)
            .await
            .map_err(e("sender keys"))?
        {
            sender_keys.push((Arc::<str>::from(address), Bytes::from(record)));
        }
    }
    into.put_sender_keys_batch(&sender_keys)
        .await
        .map_err(e("sender keys"))?;
    done.other_rows += sender_keys.len();

    // App-state sync keys: the latest one last, so it stays the latest.
    let key_ids: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT key_id FROM app_state_keys WHERE device_id = ?")
            .bind(dev)
            .fetch_all(&mut *raw)
            .await
            .map_err(|err| failed("app-state keys", err))?;
    let latest = old
        .get_latest_sync_key_id()
        .await
        .map_err(e("app-state keys"))?;
    let (last, rest): (Vec<_>, Vec<_>) = key_ids
        .into_iter()
        .partition(|id| Some(id) == latest.as_ref());
    for id in rest.iter().chain(last.iter()) {
        if let Some(key) = old.get_sync_key(id).await.map_err(e("app-state keys"))? {
            into.set_sync_key(id, key)
                .await
                .map_err(e("app-state keys"))?;
            done.other_rows += 1;
        }
    }

    for name in keys(
        raw,
        "SELECT name FROM app_state_versions WHERE device_id = ?",
        dev,
    )
    .await?
    {
        let state = old
            .get_version(&name)
            .await
            .map_err(e("app-state versions"))?;
        into.set_version(&name, state)
            .await
            .map_err(e("app-state versions"))?;
        done.other_rows += 1;
    }

    // Mutation MACs are plain columns; the trait has no getter for their version.
    let macs: Vec<(String, i64, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT name, version, index_mac, value_mac FROM app_state_mutation_macs
         WHERE device_id = ? ORDER BY name, version",
    )
    .bind(dev)
    .fetch_all(&mut *raw)
    .await
    .map_err(|err| failed("app-state MACs", err))?;
    let mut grouped: BTreeMap<(String, i64), Vec<AppStateMutationMAC>> = BTreeMap::new();
    for (name, version, index_mac, value_mac) in macs {
        grouped
            .entry((name, version))
            .or_default()
            .push(AppStateMutationMAC {
                index_mac,
                value_mac,
            });
    }
    for ((name, version), macs) in grouped {
        let version = u64::try_from(version).map_err(|err| failed("app-state MACs", err))?;
        into.put_mutation_macs(&name, version, &macs)
            .await
            .map_err(e("app-state MACs"))?;
        done.other_rows += macs.len();
    }

    for group in keys(
        raw,
        "SELECT DISTINCT group_jid FROM sender_key_devices WHERE device_id = ?",
        dev,
    )
    .await?
    {
        let entries = old
            .get_sender_key_devices(&group)
            .await
            .map_err(e("sender-key devices"))?;
        let borrowed: Vec<(&str, bool)> = entries
            .iter()
            .map(|(jid, has)| (jid.as_str(), *has))
            .collect();
        into.set_sender_key_status(&group, &borrowed)
            .await
            .map_err(e("sender-key devices"))?;
        done.other_rows += borrowed.len();
    }

    let lids = old
        .get_all_lid_mappings()
        .await
        .map_err(e("LID mappings"))?;
    into.put_lid_mappings(&lids)
        .await
        .map_err(e("LID mappings"))?;
    done.other_rows += lids.len();

    let base_keys: Vec<(String, String, Vec<u8>)> =
        sqlx::query_as("SELECT address, message_id, base_key FROM base_keys WHERE device_id = ?")
            .bind(dev)
            .fetch_all(&mut *raw)
            .await
            .map_err(|err| failed("base keys", err))?;
    for (address, message_id, base_key) in base_keys {
        into.save_base_key(&address, &message_id, &base_key)
            .await
            .map_err(e("base keys"))?;
        done.other_rows += 1;
    }

    let mut lists = Vec::new();
    for user in keys(
        raw,
        "SELECT user_id FROM device_registry WHERE device_id = ?",
        dev,
    )
    .await?
    {
        if let Some(record) = old.get_devices(&user).await.map_err(e("device lists"))? {
            lists.push(record);
        }
    }
    done.other_rows += lists.len();
    into.update_device_lists(lists)
        .await
        .map_err(e("device lists"))?;

    for group in keys(
        raw,
        "SELECT group_jid FROM group_metadata WHERE device_id = ?",
        dev,
    )
    .await?
    {
        if let Some(blob) = old
            .get_group_metadata(&group)
            .await
            .map_err(e("group metadata"))?
        {
            into.put_group_metadata(&group, &blob)
                .await
                .map_err(e("group metadata"))?;
            done.other_rows += 1;
        }
    }

    for jid in old.get_all_tc_token_jids().await.map_err(e("tc tokens"))? {
        if let Some(entry) = old.get_tc_token(&jid).await.map_err(e("tc tokens"))? {
            into.put_tc_token(&jid, &entry)
                .await
                .map_err(e("tc tokens"))?;
            done.other_rows += 1;
        }
    }

    // Sent messages (kept for retry receipts): plain columns; reading them through the
    // trait would take them out of the file.
    let sent: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT chat_jid, message_id, payload FROM sent_messages WHERE device_id = ?",
    )
    .bind(dev)
    .fetch_all(&mut *raw)
    .await
    .map_err(|err| failed("sent messages", err))?;
    for (chat, id, payload) in sent {
        into.store_sent_message(&chat, &id, &payload)
            .await
            .map_err(e("sent messages"))?;
        done.other_rows += 1;
    }

    let pending: Vec<(String, String, String)> =
        sqlx::query_as("SELECT chat, sender, id FROM pending_inbound_messages WHERE device_id = ?")
            .bind(dev)
            .fetch_all(&mut *raw)
            .await
            .map_err(|err| failed("pending inbound messages", err))?;
    for (chat, sender, id) in pending {
        if let Some(message) = old
            .get_pending_inbound(&chat, &sender, &id)
            .await
            .map_err(e("pending inbound messages"))?
        {
            into.store_pending_inbound(&chat, &sender, &id, &message)
                .await
                .map_err(e("pending inbound messages"))?;
            done.other_rows += 1;
        }
    }

    let secrets: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT chat, sender, msg_id, expires_at FROM msg_secrets WHERE device_id = ?",
    )
    .bind(dev)
    .fetch_all(&mut *raw)
    .await
    .map_err(|err| failed("message secrets", err))?;
    let mut entries = Vec::new();
    for (chat, sender, msg_id, expires_at) in secrets {
        if let Some((secret, message_ts)) = old
            .get_msg_secret_with_ts(&chat, &sender, &msg_id)
            .await
            .map_err(e("message secrets"))?
        {
            let secret = secret
                .as_slice()
                .try_into()
                .map_err(|err| failed("message secrets", err))?;
            entries.push(MsgSecretEntry {
                chat: Arc::from(chat),
                sender: Arc::from(sender),
                msg_id: Arc::from(msg_id),
                secret,
                expires_at,
                message_ts,
            });
        }
    }
    done.other_rows += into
        .put_msg_secrets(entries)
        .await
        .map_err(e("message secrets"))?;

    Ok(done)
}
