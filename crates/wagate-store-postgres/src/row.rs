//! Reading rows back into domain types, refusing values the domain would not have written.
//!
//! Column lists live here as macros so every query selecting an entity selects the same
//! columns the matching `*_from_row` reads (the SQL strings must stay `&'static str`).

use crate::error::{corrupt, map_sqlx};
use sqlx::Row;
use sqlx::postgres::PgRow;
use wagate_core::account::ApiKey;
use wagate_core::content::Details;
use wagate_core::device::{Device, DeviceStatus, EngineKind, Pacing, SafetyLimits};
use wagate_core::event::{Event, EventData};
use wagate_core::media::Media;
use wagate_core::message::{Dialect, InboundMessage, Message, MessageKind, MessageStatus};
use wagate_core::store::StoreResult;
use wagate_core::time::{Timestamp, from_millis};
use wagate_core::{AccountId, ApiKeyId, DeviceUid, EventId, MediaId, MessageId, Phone, Recipient};

macro_rules! api_key_columns {
    () => {
        "k.id, k.account_id, k.prefix, k.created_at, k.revoked_at"
    };
}
macro_rules! device_columns {
    () => {
        "d.uid, d.account_id, d.name, d.engine, d.status, d.status_reason, d.phone, \
         d.push_name, d.per_day, d.per_hour, d.per_minute, d.min_delay_ms, d.max_delay_ms, \
         d.typing_indicator, d.created_at, d.updated_at, d.connected_at"
    };
}
macro_rules! message_columns {
    () => {
        "m.id, m.account_id, m.device_uid, m.to_phone, m.kind, m.text, m.media_id, \
         m.client_message_id, m.status, m.failure_reason, m.provider_message_id, m.dialect, \
         m.send_at, m.created_at, m.updated_at, m.details"
    };
}
macro_rules! inbound_columns {
    () => {
        "i.id, i.account_id, i.device_uid, i.provider_message_id, i.from_phone, i.from_lid, \
         i.from_name, i.kind, i.text, i.media_id, i.is_group, i.group_id, i.group_name, \
         i.timestamp, i.received_at, i.read_at, i.details"
    };
}
macro_rules! media_columns {
    () => {
        "md.id, md.account_id, md.mime_type, md.size, md.file_name, md.sha256, md.created_at"
    };
}
macro_rules! event_columns {
    () => {
        "e.seq, e.id, e.account_id, e.device_uid, e.data, e.created_at"
    };
}
pub(crate) use {
    api_key_columns, device_columns, event_columns, inbound_columns, media_columns, message_columns,
};

pub(crate) fn get<'r, T>(row: &'r PgRow, col: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(col).map_err(map_sqlx)
}

fn time(row: &PgRow, col: &str) -> StoreResult<Timestamp> {
    Ok(from_millis(get::<i64>(row, col)?))
}

fn opt_time(row: &PgRow, col: &str) -> StoreResult<Option<Timestamp>> {
    Ok(get::<Option<i64>>(row, col)?.map(from_millis))
}

pub(crate) fn u32_col(row: &PgRow, col: &str) -> StoreResult<u32> {
    let v = get::<i64>(row, col)?;
    u32::try_from(v).map_err(|_| corrupt(col, v))
}

/// Parses a TEXT column with the domain's own parser.
pub(crate) fn parsed<T, E>(
    row: &PgRow,
    col: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> StoreResult<T> {
    let s = get::<String>(row, col)?;
    parse(&s).map_err(|_| corrupt(col, &s))
}

fn opt_parsed<T, E>(
    row: &PgRow,
    col: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> StoreResult<Option<T>> {
    match get::<Option<String>>(row, col)? {
        None => Ok(None),
        Some(s) => parse(&s).map(Some).map_err(|_| corrupt(col, &s)),
    }
}

/// A message's [`Details`] (a JSON document; absent when it has none).
fn details(row: &PgRow) -> StoreResult<Details> {
    let json = get::<Option<String>>(row, "details")?;
    Details::from_json(json.as_deref()).map_err(|e| corrupt("details", e))
}

fn some<T>(v: Option<T>) -> Result<T, ()> {
    v.ok_or(())
}

pub(crate) fn hash32(row: &PgRow, col: &str) -> StoreResult<[u8; 32]> {
    let v = get::<Vec<u8>>(row, col)?;
    <[u8; 32]>::try_from(v.as_slice()).map_err(|_| corrupt(col, format!("{} bytes", v.len())))
}

/// A count or sum read back as a `u64` (they are `BIGINT` in every query).
pub(crate) fn count(row: &PgRow, col: &str) -> StoreResult<u64> {
    let n = get::<i64>(row, col)?;
    u64::try_from(n).map_err(|_| corrupt(col, n))
}

pub(crate) fn api_key_from_row(row: &PgRow) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: parsed(row, "id", ApiKeyId::parse)?,
        account_id: parsed(row, "account_id", AccountId::parse)?,
        prefix: get(row, "prefix")?,
        created_at: time(row, "created_at")?,
        revoked_at: opt_time(row, "revoked_at")?,
    })
}

pub(crate) fn device_from_row(row: &PgRow) -> StoreResult<Device> {
    Ok(Device {
        uid: parsed(row, "uid", DeviceUid::parse)?,
        account_id: parsed(row, "account_id", AccountId::parse)?,
        name: get(row, "name")?,
        engine: parsed(row, "engine", |s| some(EngineKind::parse(s)))?,
        status: parsed(row, "status", |s| some(DeviceStatus::parse(s)))?,
        status_reason: get(row, "status_reason")?,
        phone: opt_parsed(row, "phone", Phone::parse)?,
        push_name: get(row, "push_name")?,
        limits: SafetyLimits {
            per_day: u32_col(row, "per_day")?,
            per_hour: u32_col(row, "per_hour")?,
            per_minute: u32_col(row, "per_minute")?,
        },
        pacing: Pacing {
            min_delay_ms: u32_col(row, "min_delay_ms")?,
            max_delay_ms: u32_col(row, "max_delay_ms")?,
            typing_indicator: get(row, "typing_indicator")?,
        },
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
        connected_at: opt_time(row, "connected_at")?,
    })
}

pub(crate) fn message_from_row(row: &PgRow) -> StoreResult<Message> {
    let id = parsed(row, "id", MessageId::parse)?;
    // Always set at accept here; read like SQLite reads its oldest rows all the same (the
    // id derived from ours), so a row copied over from SQLite reads alike.
    let provider_message_id = get::<Option<String>>(row, "provider_message_id")?
        .unwrap_or_else(|| wagate_core::engine::provider_message_id(&id));
    Ok(Message {
        id,
        account_id: parsed(row, "account_id", AccountId::parse)?,
        device_uid: parsed(row, "device_uid", DeviceUid::parse)?,
        to: parsed(row, "to_phone", Recipient::parse)?,
        kind: parsed(row, "kind", |s| some(MessageKind::parse(s)))?,
        text: get(row, "text")?,
        media_id: opt_parsed(row, "media_id", MediaId::parse)?,
        details: details(row)?,
        client_message_id: get(row, "client_message_id")?,
        status: parsed(row, "status", |s| some(MessageStatus::parse(s)))?,
        failure_reason: get(row, "failure_reason")?,
        provider_message_id,
        dialect: parsed(row, "dialect", |s| some(Dialect::parse(s)))?,
        send_at: opt_time(row, "send_at")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

pub(crate) fn inbound_from_row(row: &PgRow) -> StoreResult<InboundMessage> {
    Ok(InboundMessage {
        id: parsed(row, "id", MessageId::parse)?,
        account_id: parsed(row, "account_id", AccountId::parse)?,
        device_uid: parsed(row, "device_uid", DeviceUid::parse)?,
        provider_message_id: get(row, "provider_message_id")?,
        from: opt_parsed(row, "from_phone", Phone::parse)?,
        from_lid: get(row, "from_lid")?,
        from_name: get(row, "from_name")?,
        kind: parsed(row, "kind", |s| some(MessageKind::parse(s)))?,
        text: get(row, "text")?,
        media_id: opt_parsed(row, "media_id", MediaId::parse)?,
        details: details(row)?,
        is_group: get(row, "is_group")?,
        group_id: get(row, "group_id")?,
        group_name: get(row, "group_name")?,
        timestamp: time(row, "timestamp")?,
        received_at: time(row, "received_at")?,
        read_at: opt_time(row, "read_at")?,
    })
}

pub(crate) fn media_from_row(row: &PgRow) -> StoreResult<Media> {
    let size = get::<i64>(row, "size")?;
    Ok(Media {
        id: parsed(row, "id", MediaId::parse)?,
        account_id: parsed(row, "account_id", AccountId::parse)?,
        mime_type: get(row, "mime_type")?,
        size: u64::try_from(size).map_err(|_| corrupt("size", size))?,
        file_name: get(row, "file_name")?,
        sha256: get(row, "sha256")?,
        created_at: time(row, "created_at")?,
    })
}

pub(crate) fn event_from_row(row: &PgRow) -> StoreResult<Event> {
    Ok(Event {
        seq: get(row, "seq")?,
        id: parsed(row, "id", EventId::parse)?,
        account_id: parsed(row, "account_id", AccountId::parse)?,
        device_uid: parsed(row, "device_uid", DeviceUid::parse)?,
        data: parsed(row, "data", |s| serde_json::from_str::<EventData>(s))?,
        created_at: time(row, "created_at")?,
    })
}
