//! What wagate sends, as the Graph API's `POST /{phone_number_id}/messages` bodies. Pure:
//! media is uploaded by the session first and named here by the id Meta gave it.
//!
//! The Cloud API has no polls, edits, deletes, group sends or mentions; those are refused
//! with a reason that names the Cloud API, so the message fails saying why instead of
//! arriving as something else.

use serde_json::{Value, json};
use wagate_core::Recipient;
use wagate_core::content::{ContactCard, Location};
use wagate_core::engine::{EngineError, MessageContext, OutgoingContent};
use wagate_core::message::MessageKind;

/// How a message is sent: a body ready to post, or media to upload first.
#[derive(Debug)]
pub(crate) enum Plan<'a> {
    Ready(Value),
    Upload(Upload<'a>),
}

/// A media message: the bytes go to `/{phone_number_id}/media` first.
#[derive(Debug)]
pub(crate) struct Upload<'a> {
    /// The Graph API's message type (`image`, `video`, `audio`, `document`, `sticker`).
    pub(crate) kind: &'static str,
    pub(crate) data: &'a [u8],
    pub(crate) mime_type: &'a str,
    pub(crate) file_name: Option<&'a str>,
    pub(crate) caption: Option<&'a str>,
}

/// The number a Cloud API message goes to: digits only, as Meta takes them.
pub(crate) fn recipient(to: &Recipient) -> Result<&str, EngineError> {
    match to {
        Recipient::Phone(p) => Ok(p.digits()),
        Recipient::Group(_) => Err(unsupported(
            "the Cloud API does not send to WhatsApp groups; send to a number",
        )),
    }
}

fn unsupported(why: &str) -> EngineError {
    EngineError::Unsupported(why.to_owned())
}

/// The body for `content` to `to`, or what to upload first.
pub(crate) fn plan<'a>(
    to: &str,
    content: &'a OutgoingContent,
    context: &MessageContext,
) -> Result<Plan<'a>, EngineError> {
    let (kind, payload) = match content {
        OutgoingContent::Text { text } => (
            "text",
            // Meta renders a preview of the first link only when asked to.
            json!({ "body": text, "preview_url": has_link(text) }),
        ),
        OutgoingContent::Media {
            kind,
            data,
            mime_type,
            file_name,
            caption,
        } => {
            return Ok(Plan::Upload(Upload {
                kind: media_type(*kind)?,
                data,
                mime_type,
                file_name: file_name.as_deref(),
                caption: caption.as_deref().filter(|c| !c.is_empty()),
            }));
        }
        OutgoingContent::Location(l) => ("location", location(l)),
        OutgoingContent::Contacts(cards) => (
            "contacts",
            Value::Array(cards.iter().map(contact).collect()),
        ),
        OutgoingContent::Reaction { target, emoji } => (
            "reaction",
            json!({ "message_id": target.provider_message_id, "emoji": emoji }),
        ),
        OutgoingContent::Template(t) => (
            "template",
            json!({
                "name": t.name,
                "language": { "code": t.language },
                "components": t.components,
            }),
        ),
        OutgoingContent::Poll(_) | OutgoingContent::PollVote { .. } => {
            return Err(unsupported("the Cloud API has no polls"));
        }
        OutgoingContent::Edit { .. } => {
            return Err(unsupported("the Cloud API cannot edit a sent message"));
        }
        OutgoingContent::Delete { .. } => {
            return Err(unsupported("the Cloud API cannot delete a sent message"));
        }
    };
    Ok(Plan::Ready(body(to, kind, payload, context)))
}

/// A media message's body, once Meta named the upload `media_id`.
pub(crate) fn media_body(
    to: &str,
    upload: &Upload<'_>,
    media_id: &str,
    context: &MessageContext,
) -> Value {
    let mut media = json!({ "id": media_id });
    // Meta refuses captions on audio and stickers.
    if let Some(c) = upload.caption
        && matches!(upload.kind, "image" | "video" | "document")
    {
        media["caption"] = json!(c);
    }
    if upload.kind == "document"
        && let Some(f) = upload.file_name
    {
        media["filename"] = json!(f);
    }
    body(to, upload.kind, media, context)
}

fn body(to: &str, kind: &str, payload: Value, context: &MessageContext) -> Value {
    let mut b = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": kind,
        kind: payload,
    });
    // A reaction names its message itself; any other message may quote one.
    if kind != "reaction"
        && let Some(q) = &context.reply_to
    {
        b["context"] = json!({ "message_id": q.provider_message_id });
    }
    b
}

/// Marks a received message (and every one before it) read; with `typing`, shows
/// "typing…" to its sender too (Meta ties the indicator to a received message).
pub(crate) fn read_body(message_id: &str, typing: bool) -> Value {
    let mut b = json!({
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": message_id,
    });
    if typing {
        b["typing_indicator"] = json!({ "type": "text" });
    }
    b
}

fn media_type(kind: MessageKind) -> Result<&'static str, EngineError> {
    Ok(match kind {
        MessageKind::Image => "image",
        MessageKind::Video => "video",
        // A voice note is an audio message of Opus in Ogg; WhatsApp shows it as one.
        MessageKind::Audio | MessageKind::Voice => "audio",
        MessageKind::Document => "document",
        MessageKind::Sticker => "sticker",
        other => {
            return Err(EngineError::Internal(format!(
                "{} is not a media kind",
                other.as_str()
            )));
        }
    })
}

fn location(l: &Location) -> Value {
    let mut v = json!({ "latitude": l.latitude, "longitude": l.longitude });
    if let Some(n) = &l.name {
        v["name"] = json!(n);
    }
    if let Some(a) = &l.address {
        v["address"] = json!(a);
    }
    v
}

fn contact(c: &ContactCard) -> Value {
    json!({
        "name": { "formatted_name": c.name, "first_name": c.name },
        "phones": [{ "phone": c.phone.e164(), "wa_id": c.phone.digits(), "type": "CELL" }],
    })
}

fn has_link(text: &str) -> bool {
    text.contains("http://") || text.contains("https://")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use wagate_core::Phone;
    use wagate_core::content::{Quote, Template};

    fn ready(p: Plan<'_>) -> Value {
        match p {
            Plan::Ready(v) => v,
            Plan::Upload(u) => panic!("expected a body, got an upload of {}", u.kind),
        }
    }

    #[test]
    fn texts_quote_and_preview_links() {
        let reply = MessageContext {
            reply_to: Some(Quote {
                provider_message_id: "wamid.Q".into(),
                from_me: false,
                from: None,
                from_lid: None,
                text: None,
            }),
            mentions: vec![],
        };
        let text = OutgoingContent::Text {
            text: "see https://example.com".into(),
        };
        let b = ready(plan("15550001111", &text, &reply).unwrap());
        assert_eq!(
            b,
            json!({
                "messaging_product": "whatsapp", "recipient_type": "individual",
                "to": "15550001111", "type": "text",
                "text": { "body": "see https://example.com", "preview_url": true },
                "context": { "message_id": "wamid.Q" }
            })
        );
        let plain = OutgoingContent::Text { text: "hi".into() };
        let b = ready(plan("1", &plain, &MessageContext::default()).unwrap());
        assert_eq!(b["text"]["preview_url"], false);
        assert!(b.get("context").is_none());
    }

    #[test]
    fn locations_contacts_reactions_and_templates() {
        let none = MessageContext::default();
        let loc = OutgoingContent::Location(
            Location::new(30.0444, 31.2357, Some("Tahrir"), None).unwrap(),
        );
        let b = ready(plan("1", &loc, &none).unwrap());
        assert_eq!(
            b["location"],
            json!({ "latitude": 30.0444, "longitude": 31.2357, "name": "Tahrir" })
        );
        let card = ContactCard::new("Ana", Phone::parse("+201001234567").unwrap(), "c").unwrap();
        let b = ready(plan("1", &OutgoingContent::Contacts(vec![card]), &none).unwrap());
        assert_eq!(
            b["contacts"],
            json!([{ "name": { "formatted_name": "Ana", "first_name": "Ana" },
                     "phones": [{ "phone": "+201001234567", "wa_id": "201001234567", "type": "CELL" }] }])
        );
        let reaction = OutgoingContent::Reaction {
            target: Quote {
                provider_message_id: "wamid.T".into(),
                from_me: true,
                from: None,
                from_lid: None,
                text: None,
            },
            emoji: "👍".into(),
        };
        let b = ready(plan("1", &reaction, &none).unwrap());
        assert_eq!(
            b["reaction"],
            json!({ "message_id": "wamid.T", "emoji": "👍" })
        );
        let t = Template::new(
            "order_ready",
            "en_US",
            vec![json!({ "type": "body", "parameters": [{ "type": "text", "text": "42" }] })],
        )
        .unwrap();
        let b = ready(plan("1", &OutgoingContent::Template(t), &none).unwrap());
        assert_eq!(
            b["template"],
            json!({ "name": "order_ready", "language": { "code": "en_US" },
                    "components": [{ "type": "body", "parameters": [{ "type": "text", "text": "42" }] }] })
        );
    }

    #[test]
    fn media_is_uploaded_then_named_by_its_id() {
        let doc = OutgoingContent::Media {
            kind: MessageKind::Document,
            data: bytes::Bytes::from_static(b"%PDF"),
            mime_type: "application/pdf".into(),
            file_name: Some("invoice.pdf".into()),
            caption: Some("Your invoice".into()),
        };
        let Plan::Upload(u) = plan("1", &doc, &MessageContext::default()).unwrap() else {
            panic!("media is uploaded first");
        };
        assert_eq!((u.kind, u.mime_type), ("document", "application/pdf"));
        let b = media_body("1", &u, "MEDIA1", &MessageContext::default());
        assert_eq!(
            b["document"],
            json!({ "id": "MEDIA1", "caption": "Your invoice", "filename": "invoice.pdf" })
        );
        let voice = OutgoingContent::Media {
            kind: MessageKind::Voice,
            data: bytes::Bytes::from_static(b"OggS"),
            mime_type: "audio/ogg; codecs=opus".into(),
            file_name: None,
            caption: Some("ignored".into()),
        };
        let Plan::Upload(u) = plan("1", &voice, &MessageContext::default()).unwrap() else {
            panic!("media is uploaded first");
        };
        let b = media_body("1", &u, "MEDIA2", &MessageContext::default());
        assert_eq!(b["type"], "audio");
        assert_eq!(b["audio"], json!({ "id": "MEDIA2" }), "no caption on audio");
    }

    #[test]
    fn what_the_cloud_api_lacks_is_refused_with_a_reason() {
        let group =
            Recipient::Group(wagate_core::GroupId::parse("120363012345678901@g.us").unwrap());
        assert!(matches!(
            recipient(&group),
            Err(EngineError::Unsupported(_))
        ));
        let edit = OutgoingContent::Edit {
            target: Quote {
                provider_message_id: "x".into(),
                from_me: true,
                from: None,
                from_lid: None,
                text: None,
            },
            text: "new".into(),
        };
        match plan("1", &edit, &MessageContext::default()) {
            Err(EngineError::Unsupported(why)) => assert!(why.contains("Cloud API"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn reads_can_show_typing() {
        assert_eq!(
            read_body("wamid.A", true),
            json!({ "messaging_product": "whatsapp", "status": "read", "message_id": "wamid.A",
                    "typing_indicator": { "type": "text" } })
        );
        assert!(
            read_body("wamid.A", false)
                .get("typing_indicator")
                .is_none()
        );
    }
}
