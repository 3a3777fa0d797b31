//! Inbound WhatsApp messages → wagate's [`IncomingMessage`]: content kind, text and
//! caption, media bytes, the sender as an E.164 number even when WhatsApp named them by LID,
//! and group id and name.
//!
//! The classification is pure; what needs the live client (downloads, the LID↔PN map,
//! group metadata) comes through [`InboundContext`], so tests use a fake.

use async_trait::async_trait;
use wagate_core::Phone;
use wagate_core::engine::{IncomingMedia, IncomingMessage};
use wagate_core::message::MessageKind;
use whatsapp_rust::Jid;
use whatsapp_rust::download::Downloadable;
use whatsapp_rust::prelude::{InboundMessage, MessageExt, wa};
use whatsapp_rust::wacore_binary::JidExt;

use crate::mapping::{lid_string, phone_of_pn, ts};

/// What converting an inbound message needs from the live session.
#[async_trait]
pub(crate) trait InboundContext: Send + Sync {
    /// The number behind a sender JID (PN directly, LID through the LID↔PN map).
    async fn phone_of(&self, jid: &Jid, alt: Option<&Jid>) -> Option<Phone>;
    /// The LID of a phone-number JID, when known.
    async fn lid_of(&self, pn: &Jid) -> Option<String>;
    /// A group's subject.
    async fn group_name(&self, group: &Jid) -> Option<String>;
    /// Downloads and decrypts a media attachment.
    async fn download(&self, media: &dyn Downloadable) -> anyhow::Result<Vec<u8>>;
}

/// A media attachment found in a message.
pub(crate) struct Attachment<'a> {
    pub(crate) source: &'a dyn Downloadable,
    pub(crate) mime_type: String,
    pub(crate) file_name: Option<String>,
}

/// The content of a message as wagate sees it.
pub(crate) struct Classified<'a> {
    pub(crate) kind: MessageKind,
    pub(crate) text: Option<String>,
    pub(crate) attachment: Option<Attachment<'a>>,
}

fn mime_or(m: &Option<String>, default: &str) -> String {
    m.as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or(default)
        .to_owned()
}

/// What a message carries, or `None` for messages that are not content (reactions,
/// revokes and edits, poll votes, protocol traffic).
pub(crate) fn classify(msg: &wa::Message) -> Option<Classified<'_>> {
    let base = msg.get_base_message();
    let caption = msg.get_caption().map(str::to_owned);
    if let Some(m) = base.image_message.as_option() {
        return Some(Classified {
            kind: MessageKind::Image,
            text: caption,
            attachment: Some(Attachment {
                source: m,
                mime_type: mime_or(&m.mimetype, "image/jpeg"),
                file_name: None,
            }),
        });
    }
    if let Some(m) = base.video_message.as_option() {
        return Some(Classified {
            kind: MessageKind::Video,
            text: caption,
            attachment: Some(Attachment {
                source: m,
                mime_type: mime_or(&m.mimetype, "video/mp4"),
                file_name: None,
            }),
        });
    }
    if let Some(m) = base.audio_message.as_option() {
        return Some(Classified {
            kind: if m.ptt == Some(true) {
                MessageKind::Voice
            } else {
                MessageKind::Audio
            },
            text: None,
            attachment: Some(Attachment {
                source: m,
                mime_type: mime_or(&m.mimetype, "audio/ogg; codecs=opus"),
                file_name: None,
            }),
        });
    }
    if let Some(m) = base.document_message.as_option() {
        return Some(Classified {
            kind: MessageKind::Document,
            text: caption,
            attachment: Some(Attachment {
                source: m,
                mime_type: mime_or(&m.mimetype, "application/octet-stream"),
                file_name: m.file_name.clone().or_else(|| m.title.clone()),
            }),
        });
    }
    if let Some(m) = base.sticker_message.as_option() {
        return Some(Classified {
            kind: MessageKind::Sticker,
            text: None,
            attachment: Some(Attachment {
                source: m,
                mime_type: mime_or(&m.mimetype, "image/webp"),
                file_name: None,
            }),
        });
    }
    if let Some(text) = msg.text_content() {
        return Some(Classified {
            kind: MessageKind::Text,
            text: Some(text.to_owned()),
            attachment: None,
        });
    }
    // Locations and contact cards have no wagate kind of their own; they arrive as text so
    // that nothing a person sent is silently dropped.
    if let Some(l) = base.location_message.as_option() {
        let mut text = format!(
            "Location: {}, {}",
            l.degrees_latitude.unwrap_or_default(),
            l.degrees_longitude.unwrap_or_default()
        );
        for extra in [&l.name, &l.address].into_iter().flatten() {
            text.push_str(&format!(" — {extra}"));
        }
        return Some(Classified {
            kind: MessageKind::Text,
            text: Some(text),
            attachment: None,
        });
    }
    if let Some(c) = base.contact_message.as_option() {
        return Some(Classified {
            kind: MessageKind::Text,
            text: Some(match (&c.display_name, &c.vcard) {
                (Some(n), Some(v)) => format!("Contact: {n}\n{v}"),
                (Some(n), None) => format!("Contact: {n}"),
                (None, Some(v)) => v.clone(),
                (None, None) => "Contact card".to_owned(),
            }),
            attachment: None,
        });
    }
    None
}

/// Whether a message is for wagate's inbox at all: not our own (sent from the phone or
/// another linked device), not a status update, not a channel post.
pub(crate) fn wanted(im: &InboundMessage) -> bool {
    let src = &im.info.source;
    !src.is_from_me && !src.chat.is_status_broadcast() && !src.chat.is_newsletter()
}

/// Converts one inbound message, downloading its media. `None` when it is not content.
pub(crate) async fn convert(
    im: &InboundMessage,
    ctx: &dyn InboundContext,
    max_media_bytes: u64,
) -> Option<IncomingMessage> {
    if !wanted(im) {
        return None;
    }
    let info = &im.info;
    let src = &info.source;
    let classified = classify(&im.message)?;

    let sender = src.sender.to_non_ad();
    let alt = src.sender_alt.as_ref().map(Jid::to_non_ad);
    let from = ctx.phone_of(&sender, alt.as_ref()).await;
    let from_lid = match lid_string(&sender).or_else(|| alt.as_ref().and_then(lid_string)) {
        Some(l) => Some(l),
        None if phone_of_pn(&sender).is_some() => ctx.lid_of(&sender).await,
        None => None,
    };

    let is_group = src.is_group || src.chat.is_group();
    let (group_id, group_name) = if is_group {
        let id = src.chat.to_non_ad();
        let name = ctx.group_name(&id).await;
        (Some(id.to_string()), name)
    } else {
        (None, None)
    };

    let media = match classified.attachment {
        Some(a) => download(a, ctx, max_media_bytes, &info.id).await,
        None => None,
    };

    Some(IncomingMessage {
        provider_message_id: info.id.clone(),
        from,
        from_lid,
        from_name: Some(info.push_name.clone()).filter(|n| !n.is_empty()),
        kind: classified.kind,
        text: classified.text.filter(|t| !t.is_empty()),
        media,
        is_group,
        group_id,
        group_name,
        timestamp: ts(info.timestamp),
    })
}

async fn download(
    a: Attachment<'_>,
    ctx: &dyn InboundContext,
    max_bytes: u64,
    id: &str,
) -> Option<IncomingMedia> {
    if a.source.file_length().is_some_and(|n| n > max_bytes) {
        tracing::warn!(
            message.provider_id = id,
            size = a.source.file_length(),
            "inbound media larger than the limit; delivered without its file"
        );
        return None;
    }
    // One retry covers a CDN host hiccup; media that is gone for good (expired on the
    // CDN) must not hold the message back forever, so it is then delivered without it.
    let mut last_err = None;
    for _ in 0..2 {
        match ctx.download(a.source).await {
            Ok(data) => {
                return Some(IncomingMedia {
                    data: data.into(),
                    mime_type: a.mime_type,
                    file_name: a.file_name,
                });
            }
            Err(e) => last_err = Some(e),
        }
    }
    tracing::warn!(
        message.provider_id = id,
        error = %last_err.map(|e| format!("{e:#}")).unwrap_or_default(),
        "inbound media could not be downloaded; delivered without its file"
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;
    use whatsapp_rust::prelude::{MessageBuilderExt, MessageField};
    use whatsapp_rust::types::message::{MessageInfo, MessageSource};

    struct Fake {
        lid_to_pn: HashMap<String, String>,
        pn_to_lid: HashMap<String, String>,
        fail_downloads: bool,
    }

    #[async_trait]
    impl InboundContext for Fake {
        async fn phone_of(&self, jid: &Jid, alt: Option<&Jid>) -> Option<Phone> {
            phone_of_pn(jid)
                .or_else(|| alt.and_then(phone_of_pn))
                .or_else(|| {
                    self.lid_to_pn
                        .get(jid.user.as_str())
                        .and_then(|d| Phone::parse(d).ok())
                })
        }
        async fn lid_of(&self, pn: &Jid) -> Option<String> {
            self.pn_to_lid
                .get(pn.user.as_str())
                .map(|l| format!("{l}@lid"))
        }
        async fn group_name(&self, group: &Jid) -> Option<String> {
            (group.user.as_str() == "120363000000000001").then(|| "Team".to_owned())
        }
        async fn download(&self, media: &dyn Downloadable) -> anyhow::Result<Vec<u8>> {
            if self.fail_downloads {
                anyhow::bail!("cdn 404");
            }
            Ok(media.direct_path().unwrap_or_default().as_bytes().to_vec())
        }
    }

    fn fake() -> Fake {
        Fake {
            lid_to_pn: HashMap::from([("200000000000002".into(), "15550002222".into())]),
            pn_to_lid: HashMap::from([("15550003333".into(), "300000000000003".into())]),
            fail_downloads: false,
        }
    }

    fn inbound(message: wa::Message, source: MessageSource) -> InboundMessage {
        let info = MessageInfo {
            id: "MSG1".into(),
            push_name: "Alice".into(),
            timestamp: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            source,
            ..Default::default()
        };
        InboundMessage::builder()
            .message(Arc::new(message))
            .info(Arc::new(info))
            .build()
    }

    fn dm_from(sender: &str) -> MessageSource {
        let sender: Jid = sender.parse().unwrap();
        MessageSource {
            chat: sender.to_non_ad(),
            sender,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn text_from_a_phone_number_sender() {
        let im = inbound(
            wa::Message::text("hello"),
            dm_from("15550003333:2@s.whatsapp.net"),
        );
        let m = convert(&im, &fake(), 1 << 20).await.unwrap();
        assert_eq!(m.provider_message_id, "MSG1");
        assert_eq!(m.kind, MessageKind::Text);
        assert_eq!(m.text.as_deref(), Some("hello"));
        assert_eq!(m.from.unwrap().e164(), "+15550003333");
        assert_eq!(m.from_lid.as_deref(), Some("300000000000003@lid"));
        assert_eq!(m.from_name.as_deref(), Some("Alice"));
        assert!(!m.is_group && m.group_id.is_none());
        assert_eq!(m.timestamp.timestamp(), 1_700_000_000);
    }

    #[tokio::test]
    async fn lid_sender_is_resolved_to_a_phone() {
        let im = inbound(wa::Message::text("hi"), dm_from("200000000000002:4@lid"));
        let m = convert(&im, &fake(), 1 << 20).await.unwrap();
        assert_eq!(m.from.unwrap().digits(), "15550002222");
        assert_eq!(m.from_lid.as_deref(), Some("200000000000002@lid"));

        // sender_alt carries the number when the server sent it.
        let mut src = dm_from("900000000000009@lid");
        src.sender_alt = Some(Jid::pn("15550009999"));
        let m = convert(&inbound(wa::Message::text("hi"), src), &fake(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(m.from.unwrap().digits(), "15550009999");
        assert_eq!(m.from_lid.as_deref(), Some("900000000000009@lid"));

        // Unknown LID: no phone, LID still reported.
        let m = convert(
            &inbound(wa::Message::text("hi"), dm_from("800000000000008@lid")),
            &fake(),
            1 << 20,
        )
        .await
        .unwrap();
        assert!(m.from.is_none());
        assert_eq!(m.from_lid.as_deref(), Some("800000000000008@lid"));
    }

    #[tokio::test]
    async fn group_message_with_image_and_caption() {
        let msg = wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage {
                direct_path: Some("/img".into()),
                mimetype: Some("image/png".into()),
                caption: Some("see".into()),
                file_length: Some(4),
                ..Default::default()
            }),
            ..Default::default()
        };
        let src = MessageSource {
            chat: Jid::group("120363000000000001"),
            sender: "15550003333:1@s.whatsapp.net".parse().unwrap(),
            is_group: true,
            ..Default::default()
        };
        let m = convert(&inbound(msg, src), &fake(), 1 << 20).await.unwrap();
        assert_eq!(m.kind, MessageKind::Image);
        assert_eq!(m.text.as_deref(), Some("see"));
        let media = m.media.unwrap();
        assert_eq!(&media.data[..], b"/img");
        assert_eq!(media.mime_type, "image/png");
        assert!(m.is_group);
        assert_eq!(m.group_id.as_deref(), Some("120363000000000001@g.us"));
        assert_eq!(m.group_name.as_deref(), Some("Team"));
        assert_eq!(m.from.unwrap().digits(), "15550003333");
    }

    /// Group members often write as LIDs: the sender is still reported by phone number
    /// whenever the LID can be resolved (from the cache, or the participant's number the
    /// server sent along), with the LID beside it.
    #[tokio::test]
    async fn group_sender_writing_as_a_lid_is_reported_by_phone() {
        let in_group = |sender: &str, alt: Option<Jid>| MessageSource {
            chat: Jid::group("120363000000000001"),
            sender: sender.parse().unwrap(),
            sender_alt: alt,
            is_group: true,
            ..Default::default()
        };
        let m = convert(
            &inbound(
                wa::Message::text("hi team"),
                in_group("200000000000002:7@lid", None),
            ),
            &fake(),
            1 << 20,
        )
        .await
        .unwrap();
        assert!(m.is_group);
        assert_eq!(m.group_id.as_deref(), Some("120363000000000001@g.us"));
        assert_eq!(m.from.unwrap().digits(), "15550002222");
        assert_eq!(m.from_lid.as_deref(), Some("200000000000002@lid"));

        let m = convert(
            &inbound(
                wa::Message::text("hi team"),
                in_group("700000000000007@lid", Some(Jid::pn("15550007777"))),
            ),
            &fake(),
            1 << 20,
        )
        .await
        .unwrap();
        assert_eq!(m.from.unwrap().digits(), "15550007777");
        assert_eq!(m.from_lid.as_deref(), Some("700000000000007@lid"));
    }

    #[tokio::test]
    async fn documents_voice_and_failed_downloads() {
        let doc = wa::Message {
            document_message: MessageField::some(wa::message::DocumentMessage {
                direct_path: Some("/doc".into()),
                mimetype: Some("application/pdf".into()),
                file_name: Some("a.pdf".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = convert(
            &inbound(doc.clone(), dm_from("15550003333@s.whatsapp.net")),
            &fake(),
            1 << 20,
        )
        .await
        .unwrap();
        assert_eq!(m.kind, MessageKind::Document);
        assert_eq!(m.media.unwrap().file_name.as_deref(), Some("a.pdf"));

        let mut failing = fake();
        failing.fail_downloads = true;
        let m = convert(
            &inbound(doc, dm_from("15550003333@s.whatsapp.net")),
            &failing,
            1 << 20,
        )
        .await
        .unwrap();
        assert!(m.media.is_none(), "delivered without the file");

        let voice = wa::Message {
            audio_message: MessageField::some(wa::message::AudioMessage {
                direct_path: Some("/ptt".into()),
                ptt: Some(true),
                file_length: Some(10_000_000),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = convert(
            &inbound(voice, dm_from("15550003333@s.whatsapp.net")),
            &fake(),
            1_000,
        )
        .await
        .unwrap();
        assert_eq!(m.kind, MessageKind::Voice);
        assert!(m.media.is_none(), "over the size limit");
    }

    #[tokio::test]
    async fn own_status_and_non_content_messages_are_skipped() {
        let mut mine = dm_from("15550003333@s.whatsapp.net");
        mine.is_from_me = true;
        assert!(
            convert(&inbound(wa::Message::text("x"), mine), &fake(), 1)
                .await
                .is_none()
        );
        let status = MessageSource {
            chat: Jid::status_broadcast(),
            sender: Jid::pn("15550003333"),
            ..Default::default()
        };
        assert!(
            convert(&inbound(wa::Message::text("x"), status), &fake(), 1)
                .await
                .is_none()
        );
        let reaction = wa::Message {
            reaction_message: MessageField::some(wa::message::ReactionMessage {
                text: Some("👍".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(
            convert(
                &inbound(reaction, dm_from("15550003333@s.whatsapp.net")),
                &fake(),
                1
            )
            .await
            .is_none()
        );
    }

    #[test]
    fn locations_and_contacts_become_text() {
        let loc = wa::Message {
            location_message: MessageField::some(wa::message::LocationMessage {
                degrees_latitude: Some(30.0),
                degrees_longitude: Some(31.25),
                name: Some("Cairo".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = classify(&loc).unwrap();
        assert_eq!(c.kind, MessageKind::Text);
        assert_eq!(c.text.as_deref(), Some("Location: 30, 31.25 — Cairo"));
    }
}
