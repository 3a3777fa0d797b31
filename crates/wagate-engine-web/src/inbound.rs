//! Inbound WhatsApp messages → wagate's [`IncomingMessage`]: content kind, text and
//! caption, media bytes, the sender as an E.164 number even when WhatsApp named them by LID,
//! and group id and name.
//!
//! The classification is pure; what needs the live client (downloads, the LID↔PN map,
//! group metadata, opening poll votes) or the device's own messages (the poll a vote is
//! cast in) comes through [`InboundContext`], so tests use a fake.

use async_trait::async_trait;
use wagate_core::Phone;
use wagate_core::engine::{EventNotCommitted, IncomingMedia, IncomingMessage};
use wagate_core::message::MessageKind;
use whatsapp_rust::Jid;
use whatsapp_rust::download::Downloadable;
use whatsapp_rust::prelude::{InboundMessage, MessageExt, wa};
use whatsapp_rust::wacore_binary::JidExt;

use crate::mapping::{lid_string, phone_of_pn, ts};
use crate::structured;
use wagate_core::content::{Details, MAX_MENTIONS, Poll, Quote};
use whatsapp_rust::wacore::poll::{PollVoteCiphertext, compute_option_hash};

/// What converting an inbound message needs from the live session.
#[async_trait]
pub(crate) trait InboundContext: Send + Sync {
    /// The number behind a sender JID (PN directly, LID through the LID↔PN map).
    async fn phone_of(&self, jid: &Jid, alt: Option<&Jid>) -> Option<Phone>;
    /// The LID of a phone-number JID, when known.
    async fn lid_of(&self, pn: &Jid) -> Option<String>;
    /// A group's subject.
    async fn group_name(&self, group: &Jid) -> Option<String>;
    /// The device's own number (the author of a quoted message of ours).
    fn own_phone(&self) -> Option<Phone>;
    /// Downloads and decrypts a media attachment.
    async fn download(&self, media: &dyn Downloadable) -> anyhow::Result<Vec<u8>>;
    /// The poll the device sent or received under this id, with who wrote it
    /// ([`wagate_core::engine::EngineEvents::find_poll`]).
    async fn find_poll(&self, id: &str) -> Result<Option<(Poll, Quote)>, EventNotCommitted>;
    /// The option hashes of an encrypted vote in the poll `poll_id` (its `secret`, written
    /// by `creator`), cast by `voter`.
    async fn decrypt_vote(
        &self,
        vote: PollVoteCiphertext<'_>,
        secret: &[u8],
        poll_id: &str,
        creator: &Jid,
        voter: &Jid,
    ) -> anyhow::Result<Vec<Vec<u8>>>;
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

/// What a message carries, or `None` for messages that carry nothing wagate keeps
/// (protocol traffic, kinds it does not know).
pub(crate) fn classify(msg: &wa::Message) -> Option<Classified<'_>> {
    let base = msg.get_base_message();
    // Reactions, edits, deletes and votes act on another message; their details are read
    // by `structured::received_action`.
    if let Some(action) = structured::received_action(base) {
        return Some(Classified {
            kind: action.kind,
            text: action.text,
            attachment: None,
        });
    }
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
    // Structured content: its details are read by `structured::received_content`; a
    // location or poll is summarised from them, and contact cards none of which had a
    // usable number are summarised by name here, so nothing a person sent reads as empty.
    if base.location_message.is_set() || base.live_location_message.is_set() {
        return Some(Classified {
            kind: MessageKind::Location,
            text: None,
            attachment: None,
        });
    }
    if base.contact_message.is_set() || base.contacts_array_message.is_set() {
        let readable = !structured::received_content(base).contacts.is_empty();
        return Some(Classified {
            kind: MessageKind::Contact,
            text: if readable {
                None
            } else {
                structured::unreadable_contacts_summary(base)
            },
            attachment: None,
        });
    }
    if base.poll_creation_message.is_set()
        || base.poll_creation_message_v2.is_set()
        || base.poll_creation_message_v3.is_set()
    {
        return Some(Classified {
            kind: MessageKind::Poll,
            text: None,
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

/// Converts one inbound message, downloading its media. `Ok(None)` when it is not
/// content; an `Err` when what it needs from the device's messages could not be read (it
/// must not be acknowledged: WhatsApp offers it again).
pub(crate) async fn convert(
    im: &InboundMessage,
    ctx: &dyn InboundContext,
    max_media_bytes: u64,
) -> Result<Option<IncomingMessage>, EventNotCommitted> {
    if !wanted(im) {
        return Ok(None);
    }
    let info = &im.info;
    let src = &info.source;
    let Some(classified) = classify(&im.message) else {
        return Ok(None);
    };

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
    let mut details = details(&im.message, classified.kind, (&from, &from_lid), ctx).await;
    if let Some(update) = im
        .message
        .get_base_message()
        .poll_update_message
        .as_option()
    {
        let voter = Voter {
            jid: &sender,
            phone: from.as_ref(),
            lid: from_lid.as_deref(),
        };
        read_vote(update, &mut details, voter, ctx, &info.id).await?;
    }
    let text = match classified.text.filter(|t| !t.is_empty()) {
        Some(t) => Some(t),
        // A pin whose coordinates are off the globe: still say what came.
        None if classified.kind == MessageKind::Location && details.location.is_none() => {
            Some("Location".to_owned())
        }
        None => None,
    };

    Ok(Some(IncomingMessage {
        provider_message_id: info.id.clone(),
        from,
        from_lid,
        from_name: Some(info.push_name.clone()).filter(|n| !n.is_empty()),
        kind: classified.kind,
        text,
        media,
        details,
        is_group,
        group_id,
        group_name,
        timestamp: ts(info.timestamp),
    }))
}

/// Who cast a vote, in both of WhatsApp's namespaces where known.
struct Voter<'a> {
    jid: &'a Jid,
    phone: Option<&'a Phone>,
    lid: Option<&'a str>,
}

/// Opens a received vote: the poll it is cast in is found among the device's messages
/// (its secret and author key the vote's encryption), and the picked options' hashes are
/// matched to the poll's options. A vote that cannot be read (a poll the device never
/// saw, a key that does not open it) keeps `vote: None`: recorded, never counted, never
/// mistaken for a vote taken back.
async fn read_vote(
    update: &wa::message::PollUpdateMessage,
    d: &mut Details,
    voter: Voter<'_>,
    ctx: &dyn InboundContext,
    id: &str,
) -> Result<(), EventNotCommitted> {
    let Some(target) = d.target.clone() else {
        return Ok(());
    };
    let unreadable = |why: &str| {
        tracing::warn!(message.provider_id = id, poll = %target.provider_message_id, "{why}; the vote is kept unread");
    };
    let Some((poll, quote)) = ctx.find_poll(&target.provider_message_id).await? else {
        unreadable("a vote in a poll this device does not have");
        return Ok(());
    };
    let (Some(secret), Some(enc)) = (poll.secret_bytes(), update.vote.as_option()) else {
        unreadable("a vote without its encrypted options, or in a poll without a secret");
        return Ok(());
    };
    let (Some(payload), Some(iv)) = (enc.enc_payload.as_deref(), enc.enc_iv.as_deref()) else {
        unreadable("a vote without its encrypted options");
        return Ok(());
    };
    // The key names the poll's author and the voter in one namespace (the author's).
    let creator = match (&quote.from, &quote.from_lid) {
        _ if quote.from_me => ctx.own_phone().map(|p| Jid::pn(p.digits())),
        (Some(p), _) => Some(Jid::pn(p.digits())),
        (None, Some(lid)) => lid.parse::<Jid>().ok(),
        (None, None) => None,
    };
    let Some(creator) = creator else {
        unreadable("a vote in a poll whose author is not known");
        return Ok(());
    };
    let voter_jid = match (creator.is_lid(), voter.phone, voter.lid) {
        (false, Some(p), _) => Jid::pn(p.digits()),
        (true, _, Some(lid)) => lid.parse::<Jid>().unwrap_or_else(|_| voter.jid.clone()),
        _ => voter.jid.clone(),
    };
    let vote = PollVoteCiphertext {
        enc_payload: payload,
        enc_iv: iv,
    };
    let picked = match ctx
        .decrypt_vote(
            vote,
            &secret,
            &quote.provider_message_id,
            &creator,
            &voter_jid,
        )
        .await
    {
        Ok(hashes) => hashes,
        Err(e) => {
            unreadable(&format!("a vote that does not open ({e:#})"));
            return Ok(());
        }
    };
    d.vote = options_named(&poll, &picked);
    if d.vote.is_none() {
        unreadable("a vote for options the poll does not have");
    }
    d.target = Some(Quote {
        text: quote.text.clone().or_else(|| target.text.clone()),
        ..quote
    });
    Ok(())
}

/// The poll's options whose hashes were picked, in the poll's order; `None` when a hash
/// names no option (the vote was cast in another version of the poll).
fn options_named(poll: &Poll, hashes: &[Vec<u8>]) -> Option<Vec<String>> {
    let named: Vec<(&String, [u8; 32])> = poll
        .options
        .iter()
        .map(|o| (o, compute_option_hash(o)))
        .collect();
    if hashes
        .iter()
        .any(|h| !named.iter().any(|(_, oh)| oh.as_slice() == h.as_slice()))
    {
        return None;
    }
    Some(
        named
            .into_iter()
            .filter(|(_, oh)| hashes.iter().any(|h| h.as_slice() == oh.as_slice()))
            .map(|(o, _)| o.clone())
            .collect(),
    )
}

/// The structured content, quote and mentions of a received message; authors and
/// mentioned people by phone where WhatsApp's LIDs can be resolved.
async fn details(
    msg: &wa::Message,
    kind: MessageKind,
    sender: (&Option<Phone>, &Option<String>),
    ctx: &dyn InboundContext,
) -> Details {
    let sender = (sender.0.clone(), sender.1.clone());
    let base = msg.get_base_message();
    let mut d = if matches!(
        kind,
        MessageKind::Location | MessageKind::Contact | MessageKind::Poll
    ) {
        structured::received_content(base)
    } else {
        Details::default()
    };
    if let Some(action) = structured::received_action(base) {
        // In a one-to-one chat the target was written by the sender (their key says
        // `from_me`) or by the device; in a group the key names any other author
        // (`participant`), who may be the device or a third member.
        let by_sender = action.target_by_sender;
        let author = match action.target_author.as_deref().map(str::parse::<Jid>) {
            Some(Ok(j)) => {
                let j = j.to_non_ad();
                Some((ctx.phone_of(&j, None).await, lid_string(&j)))
            }
            _ => None,
        };
        let own = ctx.own_phone();
        let (from_me, from, from_lid) = match author {
            _ if by_sender => (false, sender.0.clone(), sender.1.clone()),
            Some((phone, _)) if phone.is_some() && phone == own => (true, None, None),
            Some((phone, lid)) if phone.is_some() || lid.is_some() => (false, phone, lid),
            _ => (true, None, None),
        };
        d.target = Some(Quote {
            provider_message_id: action.target_id,
            from_me,
            from,
            from_lid,
            text: None,
        });
        d.emoji = action.emoji;
        return d;
    }
    let Some(info) = structured::received_context(base) else {
        return d;
    };
    for jid in info.mentioned_jid.iter().take(MAX_MENTIONS) {
        if let Ok(jid) = jid.parse::<Jid>()
            && let Some(p) = ctx.phone_of(&jid.to_non_ad(), None).await
            && !d.mentions.contains(&p)
        {
            d.mentions.push(p);
        }
    }
    if info.stanza_id.is_some() {
        let author = info
            .participant
            .as_deref()
            .and_then(|p| p.parse::<Jid>().ok())
            .map(|j| j.to_non_ad());
        let (phone, lid) = match &author {
            Some(j) => (ctx.phone_of(j, None).await, lid_string(j)),
            None => (None, None),
        };
        d.reply_to = structured::received_quote(info, phone, lid, ctx.own_phone().as_ref());
    }
    d
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
        /// The device's polls by WhatsApp id; `None`: the store does not answer.
        polls: Option<HashMap<String, (Poll, Quote)>>,
    }

    /// The conversion, for messages whose conversion needs nothing from the store.
    async fn convert(
        im: &InboundMessage,
        ctx: &dyn InboundContext,
        max_media_bytes: u64,
    ) -> Option<IncomingMessage> {
        super::convert(im, ctx, max_media_bytes).await.unwrap()
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
        fn own_phone(&self) -> Option<Phone> {
            Phone::parse("15550009999").ok()
        }
        async fn download(&self, media: &dyn Downloadable) -> anyhow::Result<Vec<u8>> {
            if self.fail_downloads {
                anyhow::bail!("cdn 404");
            }
            Ok(media.direct_path().unwrap_or_default().as_bytes().to_vec())
        }
        async fn find_poll(&self, id: &str) -> Result<Option<(Poll, Quote)>, EventNotCommitted> {
            match &self.polls {
                Some(p) => Ok(p.get(id).cloned()),
                None => Err(EventNotCommitted("database is locked".into())),
            }
        }
        async fn decrypt_vote(
            &self,
            vote: PollVoteCiphertext<'_>,
            secret: &[u8],
            poll_id: &str,
            creator: &Jid,
            voter: &Jid,
        ) -> anyhow::Result<Vec<Vec<u8>>> {
            Ok(whatsapp_rust::wacore::poll::decrypt_poll_vote_with_secret(
                vote,
                secret,
                poll_id,
                &creator.to_string(),
                &voter.to_string(),
            )?)
        }
    }

    fn fake() -> Fake {
        Fake {
            lid_to_pn: HashMap::from([("200000000000002".into(), "15550002222".into())]),
            pn_to_lid: HashMap::from([("15550003333".into(), "300000000000003".into())]),
            fail_downloads: false,
            polls: Some(HashMap::new()),
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

    #[tokio::test]
    async fn locations_contacts_polls_and_replies_keep_their_details() {
        let from = || dm_from("15550003333@s.whatsapp.net");
        let loc = wa::Message {
            location_message: MessageField::some(wa::message::LocationMessage {
                degrees_latitude: Some(30.0),
                degrees_longitude: Some(31.25),
                name: Some("Cairo".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = convert(&inbound(loc, from()), &fake(), 1).await.unwrap();
        assert_eq!(m.kind, MessageKind::Location);
        assert_eq!(m.text, None, "summarised from the details when stored");
        let l = m.details.location.unwrap();
        assert_eq!(
            (l.latitude, l.longitude, l.name.as_deref()),
            (30.0, 31.25, Some("Cairo"))
        );

        let off_globe = wa::Message {
            location_message: MessageField::some(wa::message::LocationMessage {
                degrees_latitude: Some(f64::NAN),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = convert(&inbound(off_globe, from()), &fake(), 1)
            .await
            .unwrap();
        assert_eq!(
            (m.kind, m.text.as_deref()),
            (MessageKind::Location, Some("Location"))
        );

        let card = wa::Message {
            contact_message: MessageField::some(wa::message::ContactMessage {
                display_name: Some("Ana".into()),
                vcard: Some(
                    "BEGIN:VCARD\nFN:Ana\nTEL;waid=201001234567:+20 100 123 4567\nEND:VCARD".into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = convert(&inbound(card, from()), &fake(), 1).await.unwrap();
        assert_eq!(m.kind, MessageKind::Contact);
        assert_eq!(m.details.contacts[0].phone.digits(), "201001234567");

        // A reply from a LID sender, quoting our message and mentioning a LID user.
        let reply = wa::Message {
            extended_text_message: MessageField::some(wa::message::ExtendedTextMessage {
                text: Some("yes @200000000000002".into()),
                context_info: MessageField::some(wa::ContextInfo {
                    stanza_id: Some("3EB0OURS".into()),
                    participant: Some("15550009999@s.whatsapp.net".into()),
                    quoted_message: MessageField::some(wa::Message::text("Lunch?")),
                    mentioned_jid: vec!["200000000000002@lid".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = convert(&inbound(reply, from()), &fake(), 1).await.unwrap();
        assert_eq!(m.kind, MessageKind::Text);
        let q = m.details.reply_to.unwrap();
        assert_eq!(q.provider_message_id, "3EB0OURS");
        assert!(q.from_me);
        assert_eq!(q.text.as_deref(), Some("Lunch?"));
        assert_eq!(m.details.mentions[0].digits(), "15550002222");
    }

    /// A customer's vote in the device's poll: the poll found among the device's messages
    /// opens it, and the options picked come back by name; a vote in a poll the device
    /// never had, or one that does not open, is kept as unread (`vote: None`); and when
    /// the store cannot be asked the vote is not taken (WhatsApp offers it again).
    #[tokio::test]
    async fn votes_in_the_devices_polls_are_read_by_option_name() {
        let poll = Poll::new(
            "Lunch?",
            &["Noon".to_owned(), "Evening".to_owned(), "Never".to_owned()],
            true,
        )
        .unwrap()
        .with_new_secret();
        let ours = Quote {
            provider_message_id: "3EB0POLL".into(),
            from_me: true,
            from: None,
            from_lid: None,
            text: Some("Poll: Lunch?".into()),
        };
        let mut ctx = fake();
        ctx.polls = Some(HashMap::from([(
            "3EB0POLL".to_owned(),
            (poll.clone(), ours.clone()),
        )]));
        // The customer (15550003333) votes in our (15550009999) poll, as their phone would.
        let vote_with = |secret: &[u8], options: &[String]| {
            let chat = Jid::pn("15550009999");
            crate::structured::poll_vote_message(crate::structured::Vote {
                chat: &chat,
                poll_id: "3EB0POLL",
                creator: &Jid::pn("15550009999"),
                voter: &Jid::pn("15550003333"),
                from_me: false,
                secret,
                options,
            })
            .unwrap()
        };
        let secret = poll.secret_bytes().unwrap();
        let picked = ["Never".to_owned(), "Noon".to_owned()];
        let from = || dm_from("15550003333:1@s.whatsapp.net");
        let m = convert(&inbound(vote_with(&secret, &picked), from()), &ctx, 1)
            .await
            .unwrap();
        assert_eq!(m.kind, MessageKind::PollVote);
        assert_eq!(
            m.details.vote,
            Some(vec!["Noon".to_owned(), "Never".to_owned()]),
            "named in the poll's order"
        );
        assert_eq!(m.details.target, Some(ours.clone()));
        assert_eq!(m.from.unwrap().digits(), "15550003333");

        // Taking the vote back.
        let m = convert(&inbound(vote_with(&secret, &[]), from()), &ctx, 1)
            .await
            .unwrap();
        assert_eq!(m.details.vote, Some(vec![]));

        // Under another secret it does not open; in a poll not known, nothing to open it.
        let m = convert(&inbound(vote_with(&[9u8; 32], &picked), from()), &ctx, 1)
            .await
            .unwrap();
        assert_eq!((m.kind, m.details.vote), (MessageKind::PollVote, None));
        let m = convert(&inbound(vote_with(&secret, &picked), from()), &fake(), 1)
            .await
            .unwrap();
        assert_eq!(m.details.vote, None);
        assert_eq!(
            m.details.target.map(|t| (t.provider_message_id, t.from_me)),
            Some(("3EB0POLL".to_owned(), true))
        );
        // A vote for an option the poll does not have is not half-read.
        let m = convert(
            &inbound(vote_with(&secret, &["Dinner".to_owned()]), from()),
            &ctx,
            1,
        )
        .await
        .unwrap();
        assert_eq!(m.details.vote, None);

        let mut down = fake();
        down.polls = None;
        assert!(
            super::convert(&inbound(vote_with(&secret, &picked), from()), &down, 1)
                .await
                .is_err()
        );
    }
}
