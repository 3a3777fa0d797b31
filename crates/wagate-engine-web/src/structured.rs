//! Locations, contact cards, polls and a message's context (quote, mentions) both ways
//! between wagate's [`wagate_core::content`] types and WhatsApp's protobufs. Pure: the
//! quote's author and the mentioned numbers arrive as JIDs already resolved, so every
//! shape is unit-tested without a connection.

use wagate_core::Phone;
use wagate_core::content::{
    ContactCard, Details, Location, Poll, Quote, contacts_summary, received_emoji,
};
use wagate_core::engine::{EngineError, MessageContext};
use wagate_core::message::MessageKind;
use whatsapp_rust::prelude::{MessageBuilderExt, MessageExt, MessageField, wa};
use whatsapp_rust::wacore_binary::JidExt;

/// A location pin.
pub(crate) fn location_message(l: &Location) -> wa::Message {
    wa::Message {
        location_message: MessageField::some(wa::message::LocationMessage {
            degrees_latitude: Some(l.latitude),
            degrees_longitude: Some(l.longitude),
            name: l.name.clone(),
            address: l.address.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn contact(c: &ContactCard) -> wa::message::ContactMessage {
    wa::message::ContactMessage {
        display_name: Some(c.name.clone()),
        vcard: Some(c.vcard()),
        ..Default::default()
    }
}

/// One card as a contact message; several as WhatsApp's contacts array.
pub(crate) fn contacts_message(cards: &[ContactCard]) -> wa::Message {
    match cards {
        [one] => wa::Message {
            contact_message: MessageField::some(contact(one)),
            ..Default::default()
        },
        many => wa::Message {
            contacts_array_message: MessageField::some(wa::message::ContactsArrayMessage {
                display_name: Some(format!("{} contacts", many.len())),
                contacts: many.iter().map(contact).collect(),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

/// A poll with its secret, as WhatsApp Web builds it (`GeneratePollCreationMessageProto`):
/// the v3 message for single-answer polls, the original one with a count of 0 (any
/// number of answers) otherwise, and the secret voters' votes are encrypted under in the
/// message context. `None` without a well-formed secret.
pub(crate) fn poll_message(p: &Poll) -> Option<wa::Message> {
    let secret = p.secret_bytes()?;
    let poll = wa::message::PollCreationMessage {
        name: Some(p.question.clone()),
        options: p
            .options
            .iter()
            .map(|o| wa::message::poll_creation_message::Option {
                option_name: Some(o.clone()),
                option_hash: None,
            })
            .collect(),
        selectable_options_count: Some(if p.multiple_answers { 0 } else { 1 }),
        poll_content_type: Some(wa::message::PollContentType::TEXT),
        ..Default::default()
    };
    let mut m = if p.multiple_answers {
        wa::Message {
            poll_creation_message: MessageField::some(poll),
            ..Default::default()
        }
    } else {
        wa::Message {
            poll_creation_message_v3: MessageField::some(poll),
            ..Default::default()
        }
    };
    m.message_context_info = MessageField::some(wa::MessageContextInfo {
        message_secret: Some(secret),
        ..Default::default()
    });
    Some(m)
}

/// The JID (`<digits>@s.whatsapp.net`) WhatsApp names a person by in a context.
fn user_jid(p: &Phone) -> String {
    format!("{}@s.whatsapp.net", p.digits())
}

/// The context WhatsApp carries for a reply and mentions; `None` when there is neither.
/// `own` is the device's own number (the author of a quoted message of ours).
pub(crate) fn context_info(ctx: &MessageContext, own: Option<&Phone>) -> Option<wa::ContextInfo> {
    if ctx.reply_to.is_none() && ctx.mentions.is_empty() {
        return None;
    }
    let mut info = wa::ContextInfo {
        mentioned_jid: ctx.mentions.iter().map(user_jid).collect(),
        ..Default::default()
    };
    if let Some(q) = &ctx.reply_to {
        let author = if q.from_me {
            own.map(user_jid)
        } else {
            q.from.as_ref().map(user_jid).or_else(|| q.from_lid.clone())
        };
        info.stanza_id = Some(q.provider_message_id.clone());
        info.participant = author;
        // The quoted copy shows above the reply; its text is all we keep of it.
        info.quoted_message =
            MessageField::some(wa::Message::text(q.text.clone().unwrap_or_default()));
    }
    Some(info)
}

/// Attaches a context to a built message (a bare text becomes an extended one).
pub(crate) fn with_context(mut m: wa::Message, info: Option<wa::ContextInfo>) -> wa::Message {
    if let Some(info) = info {
        m.set_context_info(info);
    }
    m
}

/// The context of a received message, from whichever of its parts carries one.
pub(crate) fn received_context(m: &wa::Message) -> Option<&wa::ContextInfo> {
    macro_rules! first {
        ($($field:ident),+ $(,)?) => {
            $(
                if let Some(part) = m.$field.as_option()
                    && let Some(ctx) = part.context_info.as_option()
                {
                    return Some(ctx);
                }
            )+
        };
    }
    first!(
        extended_text_message,
        image_message,
        video_message,
        audio_message,
        document_message,
        sticker_message,
        location_message,
        contact_message,
        contacts_array_message,
        poll_creation_message,
        poll_creation_message_v2,
        poll_creation_message_v3,
    );
    None
}

/// The structured content of a received message: a location, contact cards or a poll
/// (with its secret, to read votes later). Empty for anything else.
pub(crate) fn received_content(m: &wa::Message) -> Details {
    let mut d = Details::default();
    if let Some(l) = m.location_message.as_option() {
        d.location = Location::received(
            l.degrees_latitude.unwrap_or_default(),
            l.degrees_longitude.unwrap_or_default(),
            l.name.as_deref(),
            l.address.as_deref(),
        );
    } else if let Some(c) = m.contact_message.as_option() {
        d.contacts =
            ContactCard::from_vcard(c.display_name.as_deref(), c.vcard.as_deref().unwrap_or(""))
                .into_iter()
                .collect();
    } else if let Some(a) = m.contacts_array_message.as_option() {
        d.contacts = a
            .contacts
            .iter()
            .take(wagate_core::content::MAX_CONTACTS)
            .filter_map(|c| {
                ContactCard::from_vcard(c.display_name.as_deref(), c.vcard.as_deref().unwrap_or(""))
            })
            .collect();
    } else if let Some(p) = m
        .poll_creation_message_v3
        .as_option()
        .or(m.poll_creation_message_v2.as_option())
        .or(m.poll_creation_message.as_option())
    {
        let secret = m
            .message_context_info
            .as_option()
            .and_then(|c| c.message_secret.as_deref());
        d.poll = Some(Poll::received(
            p.name.as_deref(),
            p.options.iter().filter_map(|o| o.option_name.clone()),
            p.selectable_options_count,
            secret,
        ));
    }
    d
}

/// A received reaction, edit, delete or poll vote: what it is, the key of the message it
/// acts on (its id, and whether the *sender* wrote it), the reaction's emoji, an edit's
/// new text.
pub(crate) struct ReceivedAction {
    pub(crate) kind: MessageKind,
    pub(crate) target_id: String,
    pub(crate) target_by_sender: bool,
    /// In a group, who wrote the target (the key's `participant`) when someone else did.
    pub(crate) target_author: Option<String>,
    pub(crate) emoji: Option<String>,
    pub(crate) text: Option<String>,
}

/// The action a received message is, if it is one.
pub(crate) fn received_action(m: &wa::Message) -> Option<ReceivedAction> {
    use wa::message::protocol_message::Type;
    let key_of = |k: &wa::MessageKey| {
        k.id.clone()
            .filter(|id| !id.is_empty())
            .map(|id| (id, k.from_me.unwrap_or(false), k.participant.clone()))
    };
    if let Some(r) = m.reaction_message.as_option() {
        let (target_id, by_sender, author) = key_of(r.key.as_option()?)?;
        return Some(ReceivedAction {
            kind: MessageKind::Reaction,
            target_id,
            target_by_sender: by_sender,
            target_author: author.filter(|_| !by_sender),
            emoji: Some(received_emoji(r.text.as_deref().unwrap_or(""))),
            text: None,
        });
    }
    if let Some(u) = m.poll_update_message.as_option() {
        // The options picked are encrypted; `inbound` opens them with the poll's secret.
        let (target_id, by_sender, author) = key_of(u.poll_creation_message_key.as_option()?)?;
        return Some(ReceivedAction {
            kind: MessageKind::PollVote,
            target_id,
            target_by_sender: by_sender,
            target_author: author.filter(|_| !by_sender),
            emoji: None,
            text: None,
        });
    }
    let p = m.protocol_message.as_option()?;
    let (target_id, by_sender, author) = key_of(p.key.as_option()?)?;
    let author = author.filter(|_| !by_sender);
    match p.r#type {
        Some(Type::REVOKE) => Some(ReceivedAction {
            kind: MessageKind::Delete,
            target_id,
            target_by_sender: by_sender,
            target_author: author,
            emoji: None,
            text: None,
        }),
        Some(Type::MESSAGE_EDIT) => {
            let text = p.edited_message.as_option().and_then(|e| {
                e.text_content()
                    .or_else(|| e.get_caption())
                    .map(str::to_owned)
            });
            Some(ReceivedAction {
                kind: MessageKind::Edit,
                target_id,
                target_by_sender: by_sender,
                target_author: author,
                emoji: None,
                text,
            })
        }
        _ => None,
    }
}

/// A summary of received contact cards none of which had a usable number: what was sent,
/// by name, so nothing a person sent reads as empty.
pub(crate) fn unreadable_contacts_summary(m: &wa::Message) -> Option<String> {
    let names: Vec<String> = if let Some(c) = m.contact_message.as_option() {
        c.display_name.iter().cloned().collect()
    } else if let Some(a) = m.contacts_array_message.as_option() {
        a.contacts
            .iter()
            .filter_map(|c| c.display_name.clone())
            .collect()
    } else {
        return None;
    };
    let names: Vec<String> = names
        .iter()
        .map(|n| wagate_core::text::neutralise_name(n))
        .filter(|n| !n.is_empty())
        .collect();
    Some(if names.is_empty() {
        contacts_summary(&[])
    } else {
        format!("Contact: {}", names.join("; "))
    })
}

/// The quote of a received reply; its author is resolved by the caller (`author` is the
/// phone behind `participant`, `own` the device's number).
pub(crate) fn received_quote(
    info: &wa::ContextInfo,
    author: Option<Phone>,
    author_lid: Option<String>,
    own: Option<&Phone>,
) -> Option<Quote> {
    let id = info.stanza_id.clone().filter(|s| !s.is_empty())?;
    let from_me = author.is_some() && author.as_ref() == own;
    let text = info.quoted_message.as_option().and_then(|q| {
        q.text_content()
            .or_else(|| q.get_caption())
            .map(wagate_core::text::neutralise_name)
    });
    Some(Quote {
        provider_message_id: id,
        from_me,
        from: if from_me { None } else { author },
        from_lid: if from_me { None } else { author_lid },
        text: text.filter(|t| !t.is_empty()),
    })
}

/// What a vote names ([`poll_vote_message`]).
pub(crate) struct Vote<'a> {
    pub chat: &'a whatsapp_rust::Jid,
    pub poll_id: &'a str,
    pub creator: &'a whatsapp_rust::Jid,
    pub voter: &'a whatsapp_rust::Jid,
    pub from_me: bool,
    pub secret: &'a [u8],
    pub options: &'a [String],
}

/// The `pollUpdateMessage` of a vote: the SHA-256 of each picked option's name,
/// AES-GCM-encrypted under a key derived from the poll's secret, its id, its creator and
/// the voter (wacore `poll.rs`); no options takes the vote back.
pub(crate) fn poll_vote_message(v: Vote<'_>) -> Result<wa::Message, EngineError> {
    use whatsapp_rust::wacore::poll;
    let hashes: Vec<Vec<u8>> = v
        .options
        .iter()
        .map(|o| poll::compute_option_hash(o).to_vec())
        .collect();
    let (payload, iv) = poll::encrypt_poll_vote_with_secret(
        &hashes,
        v.secret,
        v.poll_id,
        &v.creator.to_non_ad().to_string(),
        &v.voter.to_string(),
    )
    .map_err(|e| EngineError::Internal(format!("the vote could not be encrypted: {e}")))?;
    let update = wa::message::PollUpdateMessage {
        poll_creation_message_key: MessageField::some(wa::MessageKey {
            remote_jid: Some(v.chat.to_string()),
            from_me: Some(v.from_me),
            id: Some(v.poll_id.to_owned()),
            participant: v.chat.is_group().then(|| v.creator.to_non_ad().to_string()),
        }),
        vote: MessageField::some(wa::message::PollEncValue {
            enc_payload: Some(payload),
            enc_iv: Some(iv.to_vec()),
        }),
        // As WhatsApp Web: no metadata (an empty one would add stray bytes).
        metadata: MessageField::none(),
        sender_timestamp_ms: Some(chrono::Utc::now().timestamp_millis()),
    };
    Ok(wa::Message {
        poll_update_message: MessageField::some(update),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vote opens under the key its recipient derives (the poll's secret, id, creator
    /// and the voter), naming the options picked by their hashes; in a group the key
    /// names the poll's author.
    #[test]
    fn a_vote_opens_under_the_polls_key() {
        use whatsapp_rust::Jid;
        use whatsapp_rust::wacore::poll;
        let (chat, creator, voter) = (
            Jid::group("120363012345678901"),
            Jid::pn("201001234567"),
            Jid::pn("447700900123"),
        );
        let secret = [7u8; 32];
        let options = ["Evening".to_owned()];
        let m = poll_vote_message(Vote {
            chat: &chat,
            poll_id: "3EB0POLL",
            creator: &creator,
            voter: &voter,
            from_me: false,
            secret: &secret,
            options: &options,
        })
        .unwrap();
        let update = m.poll_update_message.as_option().unwrap();
        let key = update.poll_creation_message_key.as_option().unwrap();
        assert_eq!(key.id.as_deref(), Some("3EB0POLL"));
        assert_eq!(
            key.participant.as_deref(),
            Some("201001234567@s.whatsapp.net")
        );
        let vote = update.vote.as_option().unwrap();
        let picked = poll::decrypt_poll_vote_with_fallback(
            poll::PollVoteCiphertext {
                enc_payload: vote.enc_payload.as_deref().unwrap(),
                enc_iv: vote.enc_iv.as_deref().unwrap(),
            },
            &secret,
            "3EB0POLL",
            poll::PollVoteAddressing {
                poll_creator_jid: "201001234567@s.whatsapp.net",
                voter_jid: "447700900123@s.whatsapp.net",
            },
            None,
        )
        .unwrap();
        assert_eq!(picked, [poll::compute_option_hash("Evening").to_vec()]);
    }

    fn phone(s: &str) -> Phone {
        Phone::parse(s).unwrap()
    }

    #[test]
    fn locations_and_contacts_round_trip() {
        let l = Location::new(30.0444, 31.2357, Some("Cairo"), Some("Tahrir")).unwrap();
        let m = location_message(&l);
        assert_eq!(received_content(&m).location, Some(l));

        let a = ContactCard::new("Ana", phone("+201001234567"), "c").unwrap();
        let b = ContactCard::new("Bo, Jr.", phone("+447700900123"), "c").unwrap();
        let one = contacts_message(std::slice::from_ref(&a));
        assert!(one.contact_message.is_set());
        assert_eq!(received_content(&one).contacts, vec![a.clone()]);
        let two = contacts_message(&[a.clone(), b.clone()]);
        let arr = two.contacts_array_message.as_option().unwrap();
        assert_eq!(arr.display_name.as_deref(), Some("2 contacts"));
        assert_eq!(received_content(&two).contacts, vec![a, b]);
    }

    #[test]
    fn polls_carry_their_secret_and_version() {
        let p = Poll::new("Lunch?", &["Pizza".into(), "Sushi".into()], false)
            .unwrap()
            .with_new_secret();
        assert!(
            poll_message(&Poll {
                secret: None,
                ..p.clone()
            })
            .is_none()
        );
        let m = poll_message(&p).unwrap();
        let v3 = m.poll_creation_message_v3.as_option().unwrap();
        assert_eq!(v3.selectable_options_count, Some(1));
        assert_eq!(v3.options.len(), 2);
        assert_eq!(
            m.message_context_info.as_option().unwrap().message_secret,
            p.secret_bytes()
        );
        let back = received_content(&m).poll.unwrap();
        assert_eq!(back, p);

        let multi = Poll {
            multiple_answers: true,
            ..p
        };
        let m = poll_message(&multi).unwrap();
        assert!(!m.poll_creation_message_v3.is_set());
        let v1 = m.poll_creation_message.as_option().unwrap();
        assert_eq!(v1.selectable_options_count, Some(0));
        assert!(received_content(&m).poll.unwrap().multiple_answers);
    }

    #[test]
    fn replies_and_mentions_travel_in_the_context() {
        let own = phone("+15550009999");
        let ctx = MessageContext {
            reply_to: Some(Quote {
                provider_message_id: "3EB0AB".into(),
                from_me: true,
                from: None,
                from_lid: None,
                text: Some("our question".into()),
            }),
            mentions: vec![phone("+201001234567")],
        };
        let info = context_info(&ctx, Some(&own)).unwrap();
        assert_eq!(info.stanza_id.as_deref(), Some("3EB0AB"));
        assert_eq!(
            info.participant.as_deref(),
            Some("15550009999@s.whatsapp.net")
        );
        assert_eq!(info.mentioned_jid, ["201001234567@s.whatsapp.net"]);
        let m = with_context(wa::Message::text("hi @201001234567"), Some(info));
        let ext = m.extended_text_message.as_option().unwrap();
        assert_eq!(ext.text.as_deref(), Some("hi @201001234567"));
        let got = received_context(&m).unwrap();
        let q = received_quote(got, Some(own.clone()), None, Some(&own)).unwrap();
        assert!(q.from_me);
        assert_eq!(q.text.as_deref(), Some("our question"));
        let q = received_quote(got, Some(phone("+201001234567")), None, Some(&own)).unwrap();
        assert_eq!((q.from_me, q.from), (false, Some(phone("+201001234567"))));
        assert!(context_info(&MessageContext::default(), Some(&own)).is_none());
        // A location can be a reply too.
        let loc = with_context(
            location_message(&Location::new(1.0, 2.0, None, None).unwrap()),
            context_info(&ctx, Some(&own)),
        );
        assert!(received_context(&loc).is_some());
    }

    #[test]
    fn reactions_edits_and_deletes_name_their_target() {
        let key = |from_me: bool| {
            MessageField::some(wa::MessageKey {
                remote_jid: Some("15550009999@s.whatsapp.net".into()),
                from_me: Some(from_me),
                id: Some("3EB0TARGET".into()),
                participant: None,
            })
        };
        let reaction = wa::Message {
            reaction_message: MessageField::some(wa::message::ReactionMessage {
                key: key(false),
                text: Some("👍".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let a = received_action(&reaction).unwrap();
        assert_eq!(a.kind, MessageKind::Reaction);
        assert_eq!(
            (a.target_id.as_str(), a.target_by_sender),
            ("3EB0TARGET", false)
        );
        assert_eq!(a.emoji.as_deref(), Some("👍"));
        let edit = wa::Message {
            protocol_message: MessageField::some(wa::message::ProtocolMessage {
                key: key(true),
                r#type: Some(wa::message::protocol_message::Type::MESSAGE_EDIT),
                edited_message: MessageField::some(wa::Message::text("fixed")),
                ..Default::default()
            }),
            ..Default::default()
        };
        let a = received_action(&edit).unwrap();
        assert_eq!(
            (a.kind, a.text.as_deref(), a.target_by_sender),
            (MessageKind::Edit, Some("fixed"), true)
        );
        let revoke = wa::Message {
            protocol_message: MessageField::some(wa::message::ProtocolMessage {
                key: key(true),
                r#type: Some(wa::message::protocol_message::Type::REVOKE),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(received_action(&revoke).unwrap().kind, MessageKind::Delete);
        assert!(received_action(&wa::Message::text("hi")).is_none());
    }

    #[test]
    fn unreadable_cards_still_say_what_came() {
        let m = wa::Message {
            contact_message: MessageField::some(wa::message::ContactMessage {
                display_name: Some("Landline\u{202E}".into()),
                vcard: Some("BEGIN:VCARD\nFN:x\nTEL:12\nEND:VCARD".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(received_content(&m).contacts.is_empty());
        assert_eq!(
            unreadable_contacts_summary(&m).as_deref(),
            Some("Contact: Landline")
        );
    }
}
