//! Meta's webhook payloads (`object: whatsapp_business_account`) → what the session
//! reports: inbound messages (media named by Meta's id, downloaded by the session) and
//! status changes of the device's messages. Pure and lenient: unknown fields and kinds are
//! kept as far as they can be read, never a reason to refuse the whole delivery — Meta
//! would retry it for days.
//!
//! Everything in a payload comes from people who write to the number: names, captions,
//! file names and MIME types are passed on as data (the runtime neutralises names and
//! sniffs media), never trusted.

use serde::Deserialize;
use serde_json::Value;
use wagate_core::Phone;
use wagate_core::content::{ContactCard, Details, Location, Quote};
use wagate_core::message::MessageKind;
use wagate_core::time::Timestamp;

/// Everything one delivery carries for the device's number.
#[derive(Debug, Default, PartialEq)]
pub struct Batch {
    pub messages: Vec<Inbound>,
    pub statuses: Vec<Status>,
    /// Entries for other numbers (another device's, or a misconfigured app): skipped.
    pub foreign: usize,
}

/// A message a customer sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub id: String,
    pub from: Option<Phone>,
    pub from_name: Option<String>,
    pub kind: MessageKind,
    pub text: Option<String>,
    pub media: Option<MediaRef>,
    pub details: Details,
    pub timestamp: Timestamp,
}

/// An attachment, to be fetched from the Graph API by its id.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRef {
    pub id: String,
    pub mime_type: Option<String>,
    pub file_name: Option<String>,
}

/// A step of one of the device's messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The `wamid` Meta gave the message when it was sent.
    pub id: String,
    pub step: Step,
    pub timestamp: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Sent,
    Delivered,
    Read,
    /// Undeliverable after Meta took it: Meta's code and words.
    Failed {
        code: Option<i64>,
        reason: String,
    },
}

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    value: ChangeValue,
}

#[derive(Deserialize, Default)]
struct ChangeValue {
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    contacts: Vec<Contact>,
    #[serde(default)]
    messages: Vec<Value>,
    #[serde(default)]
    statuses: Vec<RawStatus>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    phone_number_id: Option<String>,
}

#[derive(Deserialize)]
struct Contact {
    #[serde(default)]
    wa_id: Option<String>,
    #[serde(default)]
    profile: Option<Profile>,
}

#[derive(Deserialize)]
struct Profile {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct RawStatus {
    id: String,
    status: String,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    errors: Vec<RawError>,
}

#[derive(Deserialize)]
struct RawError {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error_data: Option<RawErrorData>,
}

#[derive(Deserialize)]
struct RawErrorData {
    #[serde(default)]
    details: Option<String>,
}

/// Why a payload could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("not a WhatsApp Cloud API webhook: {0}")]
pub struct NotAWebhook(String);

/// Reads a delivery for the number `phone_number_id`; `own` is the device's own number
/// (the author of quoted messages of ours).
pub fn parse(
    body: &[u8],
    phone_number_id: &str,
    own: Option<&Phone>,
    now: Timestamp,
) -> Result<Batch, NotAWebhook> {
    let payload: Payload = serde_json::from_slice(body).map_err(|e| NotAWebhook(e.to_string()))?;
    let mut batch = Batch::default();
    for change in payload.entry.into_iter().flat_map(|e| e.changes) {
        if change.field.as_deref().is_some_and(|f| f != "messages") {
            continue;
        }
        let v = change.value;
        let mine = v
            .metadata
            .as_ref()
            .and_then(|m| m.phone_number_id.as_deref())
            .is_some_and(|id| id == phone_number_id);
        if !mine {
            batch.foreign += v.messages.len() + v.statuses.len();
            continue;
        }
        for m in &v.messages {
            if let Some(m) = inbound(m, &v.contacts, own, now) {
                batch.messages.push(m);
            }
        }
        for s in v.statuses {
            if let Some(s) = status(s, now) {
                batch.statuses.push(s);
            }
        }
    }
    Ok(batch)
}

fn status(s: RawStatus, now: Timestamp) -> Option<Status> {
    let step = match s.status.as_str() {
        "sent" => Step::Sent,
        "delivered" => Step::Delivered,
        "read" => Step::Read,
        "failed" => {
            let e = s.errors.into_iter().next();
            let code = e.as_ref().and_then(|e| e.code);
            let words = e.and_then(|e| {
                let title = e.title.or(e.message);
                let details = e.error_data.and_then(|d| d.details);
                match (title, details) {
                    (Some(t), Some(d)) if t != d => Some(format!("{t}: {d}")),
                    (t, d) => t.or(d),
                }
            });
            let reason = match (code, words) {
                (Some(c), Some(w)) => format!("{w} (Meta error {c})"),
                (Some(c), None) => format!("Meta reported the message undeliverable (error {c})"),
                (None, Some(w)) => w,
                (None, None) => "Meta reported the message undeliverable".to_owned(),
            };
            Step::Failed {
                code,
                reason: reason.chars().take(300).collect(),
            }
        }
        // "deleted", "warning" and whatever Meta adds: not a step of the message.
        _ => return None,
    };
    Some(Status {
        timestamp: seconds(s.timestamp.as_deref()).unwrap_or(now),
        id: s.id,
        step,
    })
}

fn seconds(s: Option<&str>) -> Option<Timestamp> {
    let secs: i64 = s?.parse().ok()?;
    chrono::DateTime::from_timestamp(secs, 0)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut at = v;
    for p in path {
        at = at.get(p)?;
    }
    at.as_str()
}

fn owned(v: &Value, path: &[&str]) -> Option<String> {
    str_at(v, path).map(str::to_owned).filter(|s| !s.is_empty())
}

fn inbound(
    m: &Value,
    contacts: &[Contact],
    own: Option<&Phone>,
    now: Timestamp,
) -> Option<Inbound> {
    let id = owned(m, &["id"])?;
    let from_digits = str_at(m, &["from"]);
    let from = from_digits.and_then(|d| Phone::parse(d).ok());
    let from_name = contacts
        .iter()
        .find(|c| c.wa_id.as_deref() == from_digits)
        .or(contacts.first())
        .and_then(|c| c.profile.as_ref()?.name.clone())
        .filter(|n| !n.is_empty());
    let kind_name = str_at(m, &["type"]).unwrap_or("unknown");
    let mut details = Details::default();
    let mut media = None;
    let mut text = None;
    let kind = match kind_name {
        "text" => {
            text = owned(m, &["text", "body"]);
            MessageKind::Text
        }
        "image" | "video" | "audio" | "document" | "sticker" => {
            let part = m.get(kind_name)?;
            media = owned(part, &["id"]).map(|id| MediaRef {
                id,
                mime_type: owned(part, &["mime_type"]),
                file_name: owned(part, &["filename"]),
            });
            text = owned(part, &["caption"]);
            match kind_name {
                "image" => MessageKind::Image,
                "video" => MessageKind::Video,
                "audio" if part.get("voice").and_then(Value::as_bool) == Some(true) => {
                    MessageKind::Voice
                }
                "audio" => MessageKind::Audio,
                "document" => MessageKind::Document,
                _ => MessageKind::Sticker,
            }
        }
        "location" => {
            let l = m.get("location")?;
            let num = |k: &str| l.get(k).and_then(Value::as_f64);
            details.location = match (num("latitude"), num("longitude")) {
                (Some(lat), Some(lon)) => {
                    Location::new(lat, lon, str_at(l, &["name"]), str_at(l, &["address"])).ok()
                }
                _ => None,
            };
            if details.location.is_none() {
                text = Some("Location".to_owned());
            }
            MessageKind::Location
        }
        "contacts" => {
            let cards = m.get("contacts").and_then(Value::as_array);
            for c in cards.into_iter().flatten() {
                let name = str_at(c, &["name", "formatted_name"]).unwrap_or("");
                let phone = c
                    .get("phones")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find_map(|p| {
                        str_at(p, &["wa_id"])
                            .or(str_at(p, &["phone"]))
                            .and_then(|d| Phone::parse(d).ok())
                    });
                if let Some(card) = phone.and_then(|p| ContactCard::new(name, p, "contacts").ok()) {
                    details.contacts.push(card);
                }
            }
            if details.contacts.is_empty() {
                text = Some("Contact".to_owned());
            }
            MessageKind::Contact
        }
        "reaction" => {
            let target = owned(m, &["reaction", "message_id"])?;
            // Customers react to the business's messages in its chat; Meta does not say
            // whose message it was, and a reaction to their own is rare.
            details.target = Some(Quote {
                provider_message_id: target,
                from_me: true,
                from: None,
                from_lid: None,
                text: None,
            });
            details.emoji = Some(str_at(m, &["reaction", "emoji"]).unwrap_or("").to_owned());
            MessageKind::Reaction
        }
        // A tap on a template's quick-reply button, or on an interactive message's button or
        // list row: what the customer chose, as text.
        "button" => {
            text = owned(m, &["button", "text"]).or_else(|| owned(m, &["button", "payload"]));
            MessageKind::Text
        }
        "interactive" => {
            text = owned(m, &["interactive", "button_reply", "title"])
                .or_else(|| owned(m, &["interactive", "list_reply", "title"]));
            MessageKind::Text
        }
        other => {
            // "unsupported", "order", "system", …: still a message someone sent.
            text = Some(format!(
                "(a {} message the Cloud API does not pass on)",
                clean(other)
            ));
            MessageKind::Text
        }
    };
    if kind != MessageKind::Reaction
        && let Some(quoted) = owned(m, &["context", "id"])
    {
        let author = str_at(m, &["context", "from"]).and_then(|d| Phone::parse(d).ok());
        let from_me = author.is_some() && author.as_ref() == own;
        details.reply_to = Some(Quote {
            provider_message_id: quoted,
            from_me,
            from: if from_me { None } else { author },
            from_lid: None,
            text: None,
        });
    }
    Some(Inbound {
        id,
        from,
        from_name,
        kind,
        text,
        media,
        details,
        timestamp: seconds(str_at(m, &["timestamp"])).unwrap_or(now),
    })
}

/// A type name from the payload, kept short and plain for the text it goes into.
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(32)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn delivery(value: Value) -> Vec<u8> {
        json!({ "object": "whatsapp_business_account", "entry": [{ "id": "WABA", "changes": [
            { "field": "messages", "value": value }
        ]}]})
        .to_string()
        .into_bytes()
    }

    fn meta() -> Value {
        json!({ "display_phone_number": "15550001111", "phone_number_id": "PNID" })
    }

    #[test]
    fn messages_of_every_kind_are_read() {
        let own = Phone::parse("15550001111").unwrap();
        let body = delivery(json!({
            "messaging_product": "whatsapp",
            "metadata": meta(),
            "contacts": [{ "profile": { "name": "Ana" }, "wa_id": "201001234567" }],
            "messages": [
                { "from": "201001234567", "id": "wamid.1", "timestamp": "1700000000", "type": "text",
                  "text": { "body": "hello" },
                  "context": { "from": "15550001111", "id": "wamid.OURS" } },
                { "from": "201001234567", "id": "wamid.2", "timestamp": "1700000001", "type": "image",
                  "image": { "id": "MEDIA1", "mime_type": "image/jpeg", "sha256": "x", "caption": "look" } },
                { "from": "201001234567", "id": "wamid.3", "timestamp": "1700000002", "type": "audio",
                  "audio": { "id": "MEDIA2", "mime_type": "audio/ogg; codecs=opus", "voice": true } },
                { "from": "201001234567", "id": "wamid.4", "timestamp": "1700000003", "type": "location",
                  "location": { "latitude": 30.04, "longitude": 31.23, "name": "Home" } },
                { "from": "201001234567", "id": "wamid.5", "timestamp": "1700000004", "type": "contacts",
                  "contacts": [{ "name": { "formatted_name": "Bo" }, "phones": [{ "phone": "+44 7700 900123", "wa_id": "447700900123" }] }] },
                { "from": "201001234567", "id": "wamid.6", "timestamp": "1700000005", "type": "reaction",
                  "reaction": { "message_id": "wamid.OURS", "emoji": "👍" } },
                { "from": "201001234567", "id": "wamid.7", "timestamp": "1700000006", "type": "button",
                  "button": { "text": "Yes please", "payload": "YES" } },
                { "from": "201001234567", "id": "wamid.8", "timestamp": "1700000007", "type": "order<script>" }
            ]
        }));
        let b = parse(&body, "PNID", Some(&own), now()).unwrap();
        assert_eq!(b.messages.len(), 8);
        let m = &b.messages[0];
        assert_eq!(
            (
                m.id.as_str(),
                m.kind,
                m.text.as_deref(),
                m.from_name.as_deref()
            ),
            ("wamid.1", MessageKind::Text, Some("hello"), Some("Ana"))
        );
        assert_eq!(m.from.as_ref().unwrap().e164(), "+201001234567");
        assert_eq!(m.timestamp.timestamp(), 1_700_000_000);
        let q = m.details.reply_to.as_ref().unwrap();
        assert_eq!(
            (q.provider_message_id.as_str(), q.from_me),
            ("wamid.OURS", true)
        );
        let img = &b.messages[1];
        assert_eq!(
            (img.kind, img.text.as_deref()),
            (MessageKind::Image, Some("look"))
        );
        assert_eq!(img.media.as_ref().unwrap().id, "MEDIA1");
        assert_eq!(b.messages[2].kind, MessageKind::Voice);
        let loc = b.messages[3].details.location.as_ref().unwrap();
        assert_eq!((loc.latitude, loc.name.as_deref()), (30.04, Some("Home")));
        assert_eq!(
            b.messages[4].details.contacts[0].phone.digits(),
            "447700900123"
        );
        let r = &b.messages[5];
        assert_eq!(r.kind, MessageKind::Reaction);
        assert_eq!(r.details.emoji.as_deref(), Some("👍"));
        assert_eq!(
            r.details.target.as_ref().unwrap().provider_message_id,
            "wamid.OURS"
        );
        assert_eq!(b.messages[6].text.as_deref(), Some("Yes please"));
        assert_eq!(
            b.messages[7].text.as_deref(),
            Some("(a orderscript message the Cloud API does not pass on)")
        );
    }

    #[test]
    fn statuses_carry_metas_reason_and_other_numbers_are_skipped() {
        let body = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "WABA", "changes": [
            { "field": "messages", "value": { "metadata": meta(), "statuses": [
                { "id": "wamid.A", "status": "read", "timestamp": "1700000100", "recipient_id": "1" },
                { "id": "wamid.A", "status": "delivered", "timestamp": "1700000050", "recipient_id": "1" },
                { "id": "wamid.B", "status": "failed", "timestamp": "1700000060", "recipient_id": "1",
                  "errors": [{ "code": 131047, "title": "Re-engagement message",
                               "error_data": { "details": "Message failed to send because more than 24 hours have passed" } }] },
                { "id": "wamid.C", "status": "deleted" }
            ]}},
            { "field": "messages", "value": { "metadata": { "phone_number_id": "OTHER" },
              "statuses": [{ "id": "wamid.Z", "status": "sent" }] } },
            { "field": "account_update", "value": {} }
        ]}]})
        .to_string();
        let b = parse(body.as_bytes(), "PNID", None, now()).unwrap();
        assert_eq!(b.foreign, 1);
        assert_eq!(b.statuses.len(), 3, "{:?}", b.statuses);
        assert_eq!(b.statuses[0].step, Step::Read);
        assert_eq!(b.statuses[1].step, Step::Delivered);
        match &b.statuses[2].step {
            Step::Failed { code, reason } => {
                assert_eq!(*code, Some(131047));
                assert_eq!(
                    reason,
                    "Re-engagement message: Message failed to send because more than 24 hours have passed (Meta error 131047)"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_is_not_a_webhook_is_said_so() {
        assert!(parse(b"not json", "PNID", None, now()).is_err());
        assert_eq!(
            parse(b"{}", "PNID", None, now()).unwrap(),
            Batch::default(),
            "an empty delivery carries nothing"
        );
        // A message without an id cannot be stored (nor told apart from its retries).
        let body =
            delivery(json!({ "metadata": meta(), "messages": [{ "from": "1", "type": "text" }] }));
        assert!(
            parse(&body, "PNID", None, now())
                .unwrap()
                .messages
                .is_empty()
        );
    }
}
