//! How a message's [`Details`] read in Msgera replies: the location, contact cards, poll
//! or template it carries, the message it quotes and whom it mentions, the message a
//! reaction, edit or delete acts on. Shared by sent and received messages; every part is
//! left out when the message has none, so replies about plain texts and media keep their
//! shape.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wagate_core::chat::GroupMember;
use wagate_core::content::{ContactCard, Details, Location, Poll, Quote};

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocationBody {
    pub latitude: f64,
    pub longitude: f64,
    pub name: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactBody {
    pub name: String,
    /// E.164.
    pub phone: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PollBody {
    pub question: String,
    pub options: Vec<String>,
    pub multiple_answers: bool,
}

/// The message a reply quotes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuoteBody {
    /// WhatsApp's id of the quoted message.
    pub provider_message_id: String,
    /// The quoted message was the device's own.
    pub from_me: bool,
    /// Who wrote it (E.164), when someone else did and the number is known.
    pub from: Option<String>,
    pub from_lid: Option<String>,
    /// The quoted text or caption.
    pub text: Option<String>,
}

/// One member of a group, as replies show it: the number whenever WhatsApp's LID could be
/// resolved to one.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberBody {
    /// E.164; null only when WhatsApp gave a LID that could not be resolved.
    pub phone: Option<String>,
    pub lid: Option<String>,
    /// member, admin or owner.
    pub role: String,
    pub is_admin: bool,
}

impl MemberBody {
    pub fn from_member(m: &GroupMember) -> Self {
        Self {
            phone: m.phone.as_ref().map(|p| p.e164()),
            lid: m.lid.clone(),
            role: m.role.as_str().to_owned(),
            is_admin: m.role.is_admin(),
        }
    }
}

/// What changed in a group's membership (`participants` messages, `group.participants`
/// events).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupChangeBody {
    /// add, remove, promote, demote or leave.
    pub action: String,
    pub participants: Vec<MemberBody>,
}

/// The structured parts of a message, flattened into its body.
#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DetailsBody {
    /// On `location` messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<LocationBody>,
    /// On `contact` messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contacts: Option<Vec<ContactBody>>,
    /// On `poll` messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll: Option<PollBody>,
    /// On replies: the message quoted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<QuoteBody>,
    /// Phone numbers (E.164) the message mentions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Vec<String>>,
    /// On reactions, edits and deletes: the message acted on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<QuoteBody>,
    /// On reactions: the emoji (`""`: the reaction was removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    /// On `participants` messages: who was added, removed, promoted, demoted or left (the
    /// sender is who did it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_change: Option<GroupChangeBody>,
    /// On `poll_vote` messages: the options picked (`[]`: the vote was taken back); the
    /// poll is `target`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vote: Option<Vec<String>>,
    /// On `template` messages: the template and its parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateBody>,
}

/// A message template as sent.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateBody {
    /// The template's name as Meta shows it.
    pub name: String,
    /// Its language code, e.g. `en_US`.
    pub language: String,
    /// Header, body and button parameters, in Meta's shape (`[{"type": "body",
    /// "parameters": [{"type": "text", "text": "…"}]}]`).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub components: Vec<serde_json::Value>,
}

fn location(l: &Location) -> LocationBody {
    LocationBody {
        latitude: l.latitude,
        longitude: l.longitude,
        name: l.name.clone(),
        address: l.address.clone(),
    }
}

fn contact(c: &ContactCard) -> ContactBody {
    ContactBody {
        name: c.name.clone(),
        phone: c.phone.e164(),
    }
}

fn poll(p: &Poll) -> PollBody {
    PollBody {
        question: p.question.clone(),
        options: p.options.clone(),
        multiple_answers: p.multiple_answers,
    }
}

fn quote(q: &Quote) -> QuoteBody {
    QuoteBody {
        provider_message_id: q.provider_message_id.clone(),
        from_me: q.from_me,
        from: q.from.as_ref().map(|p| p.e164()),
        from_lid: q.from_lid.clone(),
        text: q.text.clone(),
    }
}

impl DetailsBody {
    pub fn from_details(d: &Details) -> Self {
        Self {
            location: d.location.as_ref().map(location),
            contacts: (!d.contacts.is_empty()).then(|| d.contacts.iter().map(contact).collect()),
            poll: d.poll.as_ref().map(poll),
            reply_to: d.reply_to.as_ref().map(quote),
            mentions: (!d.mentions.is_empty())
                .then(|| d.mentions.iter().map(|p| p.e164()).collect()),
            target: d.target.as_ref().map(quote),
            emoji: d.emoji.clone(),
            group_change: d.group_change.as_ref().map(|c| GroupChangeBody {
                action: c.action.as_str().to_owned(),
                participants: c.participants.iter().map(MemberBody::from_member).collect(),
            }),
            vote: d.vote.clone(),
            template: d.template.as_ref().map(|t| TemplateBody {
                name: t.name.clone(),
                language: t.language.clone(),
                components: t.components.clone(),
            }),
        }
    }
}
