//! Structured content beyond text and media: a shared location, contact cards, a poll, and
//! the context a message carries (the message it quotes, the people it mentions).
//!
//! Both directions speak these types: a caller's send is checked here once (ranges,
//! lengths, a poll's 2–12 distinct options) and a stranger's message is made harmless here
//! (names neutralised, a hostile vCard read for what it can tell). They travel with a
//! message as [`Details`], kept by the stores as one JSON document, and each has a plain
//! text [`Details::summary`] so lists and seed-format webhooks that only know `text` still
//! say what arrived.

use crate::phone::Phone;
use crate::text::{check_name, neutralise_name};
use serde::{Deserialize, Serialize};

/// Longest poll question WhatsApp shows, in characters.
pub const MAX_POLL_QUESTION_CHARS: usize = 255;
/// Longest poll option WhatsApp shows, in characters.
pub const MAX_POLL_OPTION_CHARS: usize = 100;
/// Fewest and most options a WhatsApp poll has.
pub const POLL_OPTIONS: std::ops::RangeInclusive<usize> = 2..=12;
/// Most contact cards in one message (WhatsApp's contact picker stops there).
pub const MAX_CONTACTS: usize = 20;
/// Most people mentioned in one message.
pub const MAX_MENTIONS: usize = 256;
/// Longest location name or address kept, in characters.
pub const MAX_PLACE_CHARS: usize = 1_000;
/// How long after sending WhatsApp lets a message be edited.
pub const EDIT_WINDOW: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// How long after sending wagate lets a message be deleted for everyone (WhatsApp allows
/// about two and a half days; the margin keeps a late hand-over inside it).
pub const DELETE_WINDOW: std::time::Duration = std::time::Duration::from_secs(48 * 3600);
/// Longest reaction accepted, in characters (one emoji with its modifiers and joiners).
pub const MAX_EMOJI_CHARS: usize = 16;
/// Longest vCard read from an inbound contact, in bytes (anything longer is not a card).
const MAX_VCARD_BYTES: usize = 64 * 1024;

/// A point on the map, with the place's name and address when given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// A person's card: shown as a contact the recipient can save or message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactCard {
    pub name: String,
    pub phone: Phone,
}

/// A poll: a question with 2–12 options, one or several answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Poll {
    pub question: String,
    pub options: Vec<String>,
    #[serde(default)]
    pub multiple_answers: bool,
    /// The poll's 32-byte secret (hex), which voters' encrypted votes are tied to: chosen
    /// once when a send is accepted, so every attempt sends the same poll, and kept from
    /// inbound polls to read their votes. Never shown through the APIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// The message a reply quotes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quote {
    /// WhatsApp's id of the quoted message.
    pub provider_message_id: String,
    /// The quoted message is the device's own (sent by us).
    #[serde(default)]
    pub from_me: bool,
    /// Who wrote the quoted message, when it was someone else and their number is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Phone>,
    /// Their LID, when WhatsApp named them by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_lid: Option<String>,
    /// The quoted text or caption, shown above the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl Quote {
    /// The quote of a message the device sent.
    pub fn of_sent(m: &crate::message::Message) -> Self {
        Self {
            provider_message_id: m.provider_message_id.clone(),
            from_me: true,
            from: None,
            from_lid: None,
            text: m.text.clone(),
        }
    }

    /// The quote of a message the device received.
    pub fn of_received(m: &crate::message::InboundMessage) -> Self {
        Self {
            provider_message_id: m.provider_message_id.clone(),
            from_me: false,
            from: m.from.clone(),
            from_lid: m.from_lid.clone(),
            text: m.text.clone(),
        }
    }
}

/// Everything a message carries besides its kind, text and media.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Details {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<ContactCard>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<Poll>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Quote>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<Phone>,
    /// The message a reaction, edit or delete acts on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Quote>,
    /// A reaction's emoji; empty when the reaction was removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    /// What changed in a group's membership (received `participants` messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_change: Option<crate::chat::GroupChange>,
    /// A poll vote's options (`poll_vote` messages; empty: the vote was taken back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vote: Option<Vec<String>>,
    /// A message template approved by Meta (`template` messages, Cloud API devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
}

/// A message template Meta approved for the business account, filled in: its name, its
/// language, and the parameters of its header, body and buttons (`components`, passed to
/// Meta as given: their shape is Meta's and changes with it). The only message a Cloud API
/// number may send to someone who has not written in the last 24 hours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    pub name: String,
    pub language: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<serde_json::Value>,
}

/// A message template as its provider lists it: what may be sent with [`Template`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateInfo {
    pub name: String,
    pub language: String,
    /// `APPROVED`, `PENDING`, `REJECTED`… as Meta says.
    #[serde(default)]
    pub status: Option<String>,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    #[serde(default)]
    pub category: Option<String>,
    /// The template's header, body and buttons, in Meta's shape.
    #[serde(default)]
    pub components: Vec<serde_json::Value>,
}

/// Meta's limits on template names; components are Meta's to check, but bounded here so a
/// caller cannot store megabytes of them per message.
const MAX_TEMPLATE_NAME: usize = 512;
const MAX_TEMPLATE_COMPONENTS: usize = 20;
const MAX_TEMPLATE_COMPONENTS_BYTES: usize = 16 * 1024;

impl Template {
    /// A template to send: `name` as Meta knows it (lowercase letters, digits and `_`),
    /// `language` a code such as `en` or `en_US`, each component a JSON object.
    pub fn new(
        name: &str,
        language: &str,
        components: Vec<serde_json::Value>,
    ) -> Result<Self, ContentError> {
        let name = name.trim();
        if name.is_empty()
            || name.len() > MAX_TEMPLATE_NAME
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(refuse(
                "name",
                format!(
                    "must be the template's name as Meta shows it: 1 to {MAX_TEMPLATE_NAME} \
                     lowercase letters, digits or underscores"
                ),
            ));
        }
        let language = language.trim();
        let parts: Vec<&str> = language.split('_').collect();
        let well_formed = matches!(parts.as_slice(), [l] | [l, _] if (2..=3).contains(&l.len()))
            && parts
                .iter()
                .all(|p| (2..=4).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
        if !well_formed {
            return Err(refuse(
                "language",
                "must be a template language code such as `en`, `en_US` or `pt_BR`",
            ));
        }
        if components.len() > MAX_TEMPLATE_COMPONENTS {
            return Err(refuse(
                "components",
                format!("at most {MAX_TEMPLATE_COMPONENTS} components"),
            ));
        }
        for (i, c) in components.iter().enumerate() {
            if !c.is_object() {
                return Err(refuse(
                    format!("components[{i}]"),
                    "must be an object such as {\"type\": \"body\", \"parameters\": [...]}",
                ));
            }
        }
        let size: usize = components.iter().map(|c| c.to_string().len()).sum();
        if size > MAX_TEMPLATE_COMPONENTS_BYTES {
            return Err(refuse(
                "components",
                format!("at most {MAX_TEMPLATE_COMPONENTS_BYTES} bytes of JSON in all"),
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            language: language.to_owned(),
            components,
        })
    }

    /// What stands for the message in lists and for text-only readers.
    pub fn summary(&self) -> String {
        format!("Template: {} ({})", self.name, self.language)
    }
}

/// Why a caller's content was refused: the field (relative to the request body) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ContentError {
    pub field: String,
    pub reason: String,
}

fn refuse(field: impl Into<String>, reason: impl Into<String>) -> ContentError {
    ContentError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A caller's optional free text (a place name, an address): trimmed, empty is absent,
/// no control or direction characters, at most `max` characters.
fn caller_text(
    value: Option<&str>,
    field: &str,
    max: usize,
) -> Result<Option<String>, ContentError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Some(c) = v.chars().find(|c| c.is_control() && *c != '\n') {
        return Err(refuse(
            field,
            format!(
                "must not contain control characters (found U+{:04X})",
                c as u32
            ),
        ));
    }
    if v.chars().count() > max {
        return Err(refuse(field, format!("must be at most {max} characters")));
    }
    Ok(Some(v.to_owned()))
}

impl Location {
    /// A caller's location: latitude −90…90, longitude −180…180, both finite.
    pub fn new(
        latitude: f64,
        longitude: f64,
        name: Option<&str>,
        address: Option<&str>,
    ) -> Result<Self, ContentError> {
        if !latitude.is_finite() || !(-90.0..=90.0).contains(&latitude) {
            return Err(refuse("latitude", "must be a number from -90 to 90"));
        }
        if !longitude.is_finite() || !(-180.0..=180.0).contains(&longitude) {
            return Err(refuse("longitude", "must be a number from -180 to 180"));
        }
        Ok(Self {
            latitude,
            longitude,
            name: caller_text(name, "name", MAX_PLACE_CHARS)?,
            address: caller_text(address, "address", MAX_PLACE_CHARS)?,
        })
    }

    /// A location someone sent: kept when its coordinates are on the globe, its texts
    /// neutralised.
    pub fn received(
        latitude: f64,
        longitude: f64,
        name: Option<&str>,
        address: Option<&str>,
    ) -> Option<Self> {
        let on_globe = latitude.is_finite()
            && longitude.is_finite()
            && (-90.0..=90.0).contains(&latitude)
            && (-180.0..=180.0).contains(&longitude);
        let clean = |s: Option<&str>| s.map(neutralise_name).filter(|s| !s.is_empty());
        on_globe.then(|| Self {
            latitude,
            longitude,
            name: clean(name),
            address: clean(address),
        })
    }

    pub fn summary(&self) -> String {
        let mut out = format!("Location: {}, {}", self.latitude, self.longitude);
        for extra in [&self.name, &self.address].into_iter().flatten() {
            out.push_str(" — ");
            out.push_str(extra);
        }
        out
    }
}

/// Escapes a vCard 3.0 text value (RFC 2426 §4: backslash, comma, semicolon, newline), so
/// a name cannot end its line and add properties of its own.
fn vcard_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ',' => out.push_str("\\,"),
            ';' => out.push_str("\\;"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

fn vcard_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl ContactCard {
    /// A caller's card: a name of 1–256 characters without control or direction
    /// characters (`field` names it in errors).
    pub fn new(name: &str, phone: Phone, field: &str) -> Result<Self, ContentError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(refuse(field, "must be at least 1 character"));
        }
        check_name(name).map_err(|m| refuse(field, m))?;
        Ok(Self {
            name: name.to_owned(),
            phone,
        })
    }

    /// The card as WhatsApp carries it: a vCard 3.0 whose `waid` lets the recipient
    /// message the number at once.
    pub fn vcard(&self) -> String {
        let name = vcard_escape(&self.name);
        format!(
            "BEGIN:VCARD\nVERSION:3.0\nN:;{name};;;\nFN:{name}\nTEL;type=CELL;type=VOICE;waid={d}:{e}\nEND:VCARD",
            d = self.phone.digits(),
            e = self.phone.e164(),
        )
    }

    /// Reads a vCard someone sent, for its name and first usable number: `display_name`
    /// (WhatsApp's own field) wins over the card's `FN`. `None` when no number in it is a
    /// phone number; the message's text summary still shows what was sent.
    pub fn from_vcard(display_name: Option<&str>, vcard: &str) -> Option<Self> {
        if vcard.len() > MAX_VCARD_BYTES {
            return None;
        }
        let mut name: Option<String> = None;
        let mut phone: Option<Phone> = None;
        // Folded lines (RFC 2426 §2.6) continue with a space or tab.
        let unfolded = vcard
            .replace("\r\n", "\n")
            .replace("\n ", "")
            .replace("\n\t", "");
        for line in unfolded.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let key_upper = key.to_ascii_uppercase();
            let property = key_upper.split(';').next().unwrap_or("");
            let property = property.rsplit('.').next().unwrap_or(property);
            match property {
                "FN" if name.is_none() => name = Some(vcard_unescape(value)),
                "TEL" if phone.is_none() => {
                    // `waid=` is the WhatsApp number itself; otherwise the value's digits.
                    let waid = key_upper
                        .split(';')
                        .find_map(|p| p.strip_prefix("WAID="))
                        .map(str::to_owned);
                    let digits: String = waid
                        .unwrap_or_else(|| value.to_owned())
                        .chars()
                        .filter(char::is_ascii_digit)
                        .collect();
                    phone = Phone::parse(&digits).ok();
                }
                _ => {}
            }
        }
        let name = display_name
            .map(neutralise_name)
            .filter(|n| !n.is_empty())
            .or_else(|| {
                name.as_deref()
                    .map(neutralise_name)
                    .filter(|n| !n.is_empty())
            });
        let phone = phone?;
        Some(Self {
            name: name.unwrap_or_else(|| phone.e164()),
            phone,
        })
    }

    pub fn summary(&self) -> String {
        format!("{} ({})", self.name, self.phone.e164())
    }
}

/// The summary of contact cards: `Contact: Ana (+20…)`, one line per card.
pub fn contacts_summary(cards: &[ContactCard]) -> String {
    let lines: Vec<String> = cards.iter().map(ContactCard::summary).collect();
    match lines.as_slice() {
        [] => "Contact card".to_owned(),
        [one] => format!("Contact: {one}"),
        many => format!("Contacts: {}", many.join("; ")),
    }
}

impl Poll {
    /// A caller's poll: a question of 1–255 characters and 2–12 distinct options of 1–100
    /// characters each (as WhatsApp requires; distinct because votes name options by
    /// their hash). The secret is chosen at accept.
    pub fn new(
        question: &str,
        options: &[String],
        multiple_answers: bool,
    ) -> Result<Self, ContentError> {
        let question = question.trim();
        if question.is_empty() {
            return Err(refuse("question", "must be at least 1 character"));
        }
        if question.chars().count() > MAX_POLL_QUESTION_CHARS {
            return Err(refuse(
                "question",
                format!("must be at most {MAX_POLL_QUESTION_CHARS} characters"),
            ));
        }
        if let Some(c) = question.chars().find(|c| c.is_control() && *c != '\n') {
            return Err(refuse(
                "question",
                format!(
                    "must not contain control characters (found U+{:04X})",
                    c as u32
                ),
            ));
        }
        if !POLL_OPTIONS.contains(&options.len()) {
            return Err(refuse(
                "options",
                format!(
                    "must hold {} to {} options (got {})",
                    POLL_OPTIONS.start(),
                    POLL_OPTIONS.end(),
                    options.len()
                ),
            ));
        }
        let mut kept: Vec<String> = Vec::with_capacity(options.len());
        for (i, o) in options.iter().enumerate() {
            let field = format!("options[{i}]");
            let o = o.trim();
            if o.is_empty() {
                return Err(refuse(field, "must be at least 1 character"));
            }
            if o.chars().count() > MAX_POLL_OPTION_CHARS {
                return Err(refuse(
                    field,
                    format!("must be at most {MAX_POLL_OPTION_CHARS} characters"),
                ));
            }
            check_name(o).map_err(|m| refuse(field.clone(), m))?;
            if kept.iter().any(|k| k == o) {
                return Err(refuse(field, "repeats an earlier option"));
            }
            kept.push(o.to_owned());
        }
        Ok(Self {
            question: question.to_owned(),
            options: kept,
            multiple_answers,
            secret: None,
        })
    }

    /// A poll someone sent: names neutralised, empty options dropped, at most 12 kept.
    pub fn received(
        question: Option<&str>,
        options: impl IntoIterator<Item = String>,
        selectable: Option<u32>,
        secret: Option<&[u8]>,
    ) -> Self {
        Self {
            question: question.map(neutralise_name).unwrap_or_default(),
            options: options
                .into_iter()
                .map(|o| neutralise_name(&o))
                .filter(|o| !o.is_empty())
                .take(*POLL_OPTIONS.end())
                .collect(),
            // WhatsApp's count: 1 is single-answer; 0 (any) or more is several.
            multiple_answers: selectable != Some(1),
            secret: secret.filter(|s| s.len() == 32).map(hex),
        }
    }

    pub fn summary(&self) -> String {
        let mut out = format!("Poll: {}", self.question);
        for o in &self.options {
            out.push_str("\n- ");
            out.push_str(o);
        }
        out
    }

    /// The secret's bytes, when it has a well-formed one.
    pub fn secret_bytes(&self) -> Option<Vec<u8>> {
        let s = self.secret.as_deref()?;
        if s.len() != 64 {
            return None;
        }
        (0..32)
            .map(|i| u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok())
            .collect()
    }

    /// A fresh random secret for a poll about to be accepted.
    pub fn with_new_secret(mut self) -> Self {
        let bytes: [u8; 32] = rand::random();
        self.secret = Some(hex(&bytes));
        self
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Details {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The text that stands for a message of `kind` with these details, for lists and for
    /// receivers that read only `text`; `None` for a message whose own text says it all
    /// (texts, captions, an edit's new text).
    pub fn summary_of(&self, kind: crate::message::MessageKind) -> Option<String> {
        use crate::message::MessageKind;
        match kind {
            MessageKind::Reaction => Some(match self.emoji.as_deref() {
                Some(e) if !e.is_empty() => format!("Reacted {e}"),
                _ => "Removed a reaction".to_owned(),
            }),
            MessageKind::Delete => Some("Deleted a message".to_owned()),
            MessageKind::Template => self.template.as_ref().map(Template::summary),
            MessageKind::PollVote => Some(match self.vote.as_deref() {
                Some([]) => "Took back a vote".to_owned(),
                Some(v) => format!("Voted: {}", v.join(", ")),
                // An engine that could not open the vote (a poll it does not know).
                None => "Voted (the vote could not be read)".to_owned(),
            }),
            MessageKind::Participants => self.group_change.as_ref().map(|c| {
                let who: Vec<String> = c
                    .participants
                    .iter()
                    .map(|m| match (&m.phone, &m.lid) {
                        (Some(p), _) => p.e164(),
                        (None, Some(l)) => l.clone(),
                        (None, None) => "someone".to_owned(),
                    })
                    .collect();
                let verb = match c.action {
                    crate::chat::MembershipChange::Add => "Added",
                    crate::chat::MembershipChange::Remove => "Removed",
                    crate::chat::MembershipChange::Promote => "Made admin",
                    crate::chat::MembershipChange::Demote => "Dismissed as admin",
                    crate::chat::MembershipChange::Leave => "Left",
                };
                format!("{verb}: {}", who.join(", "))
            }),
            MessageKind::Edit => None,
            _ => self.summary(),
        }
    }

    /// The text that stands for the structured content (a location, cards, a poll).
    pub fn summary(&self) -> Option<String> {
        if let Some(l) = &self.location {
            return Some(l.summary());
        }
        if !self.contacts.is_empty() {
            return Some(contacts_summary(&self.contacts));
        }
        self.poll.as_ref().map(Poll::summary)
    }

    /// The JSON the stores keep (`None` when there is nothing to keep).
    pub fn to_json(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        // A struct of strings, numbers and lists: serialising cannot fail.
        serde_json::to_string(self).ok()
    }

    /// Reads what [`Self::to_json`] wrote.
    pub fn from_json(json: Option<&str>) -> Result<Self, serde_json::Error> {
        match json {
            None => Ok(Self::default()),
            Some(j) => serde_json::from_str(j),
        }
    }

    /// What of the details a caller's request said, for its idempotency fingerprint
    /// ([`crate::message::RequestIdentity`]): everything but the poll's secret, which
    /// is chosen per accept. `None` when there is nothing.
    pub fn request_fingerprint(&self) -> Option<String> {
        let mut d = self.clone();
        if let Some(p) = &mut d.poll {
            p.secret = None;
        }
        d.to_json()
    }
}

/// A vote a caller casts in `poll`: each option one of the poll's, once; at most one
/// unless the poll allows several; none takes the vote back.
pub fn check_vote(poll: &Poll, options: &[String]) -> Result<(), ContentError> {
    if !poll.multiple_answers && options.len() > 1 {
        return Err(refuse(
            "options",
            "this poll takes one answer; pick one option (or none to take the vote back)",
        ));
    }
    for (i, o) in options.iter().enumerate() {
        if !poll.options.contains(o) {
            return Err(refuse(
                format!("options[{i}]"),
                format!(
                    "is not an option of the poll (its options: {})",
                    poll.options.join(", ")
                ),
            ));
        }
        if options[..i].contains(o) {
            return Err(refuse(format!("options[{i}]"), "repeats an earlier option"));
        }
    }
    Ok(())
}

/// One option of a poll with the votes it has now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OptionTally {
    pub option: String,
    pub votes: usize,
    /// Who picked it (phones in E.164, or LIDs when the number is unknown).
    pub voters: Vec<String>,
}

/// A poll's results: each voter's latest vote counts (a new vote replaces their earlier
/// one; an empty one takes it back), in the poll's order of options. `votes` are (voter,
/// options picked), oldest first; options no longer in the poll are ignored.
pub fn tally(poll: &Poll, votes: &[(String, Vec<String>)]) -> Vec<OptionTally> {
    let mut latest: Vec<(&str, &[String])> = Vec::new();
    for (voter, picked) in votes {
        match latest.iter_mut().find(|(v, _)| v == voter) {
            Some(slot) => slot.1 = picked,
            None => latest.push((voter, picked)),
        }
    }
    poll.options
        .iter()
        .map(|option| {
            let voters: Vec<String> = latest
                .iter()
                .filter(|(_, picked)| picked.contains(option))
                .map(|(v, _)| (*v).to_owned())
                .collect();
            OptionTally {
                option: option.clone(),
                votes: voters.len(),
                voters,
            }
        })
        .collect()
}

/// Checks a reaction a caller sends: `""` removes one; otherwise a short run of
/// characters that are not letters, digits, spaces or controls (an emoji, with its skin
/// tone and joiners).
pub fn check_emoji(emoji: &str) -> Result<(), ContentError> {
    if emoji.is_empty() {
        return Ok(());
    }
    if emoji.chars().count() > MAX_EMOJI_CHARS {
        return Err(refuse(
            "emoji",
            format!(
                "must be one emoji (at most {MAX_EMOJI_CHARS} characters), or \"\" to remove the reaction"
            ),
        ));
    }
    if emoji
        .chars()
        .any(|c| c.is_alphanumeric() || c.is_whitespace() || c.is_control())
    {
        return Err(refuse(
            "emoji",
            "must be an emoji such as 👍, or \"\" to remove the reaction",
        ));
    }
    Ok(())
}

/// A reaction someone sent, kept when it looks like one (else dropped as empty).
pub fn received_emoji(emoji: &str) -> String {
    if check_emoji(emoji).is_ok() {
        emoji.to_owned()
    } else {
        neutralise_name(emoji)
            .chars()
            .take(MAX_EMOJI_CHARS)
            .collect()
    }
}

/// Checks the mentions a caller listed: at most [`MAX_MENTIONS`], each once.
pub fn check_mentions(mentions: &[Phone]) -> Result<(), ContentError> {
    if mentions.len() > MAX_MENTIONS {
        return Err(refuse(
            "mentions",
            format!("must list at most {MAX_MENTIONS} phone numbers"),
        ));
    }
    for (i, m) in mentions.iter().enumerate() {
        if mentions[..i].contains(m) {
            return Err(refuse(
                format!("mentions[{i}]"),
                "repeats an earlier number",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_voters_latest_vote_counts() {
        let poll = Poll::new("Lunch?", &["Yes".to_owned(), "No".to_owned()], false).unwrap();
        let v = |who: &str, picked: &[&str]| {
            (
                who.to_owned(),
                picked.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            )
        };
        let t = tally(
            &poll,
            &[
                v("+1", &["Yes"]),
                v("+2", &["Yes"]),
                v("+1", &["No"]),
                v("+2", &[]),
                v("+3", &["Gone"]),
            ],
        );
        assert_eq!(
            t.iter()
                .map(|o| (o.option.as_str(), o.votes))
                .collect::<Vec<_>>(),
            [("Yes", 0), ("No", 1)]
        );
        assert_eq!(t[1].voters, ["+1"]);
        assert!(check_vote(&poll, &["Yes".into()]).is_ok());
        assert!(check_vote(&poll, &[]).is_ok(), "none takes the vote back");
        assert_eq!(
            check_vote(&poll, &["Yes".into(), "No".into()])
                .unwrap_err()
                .field,
            "options"
        );
        assert_eq!(
            check_vote(&poll, &["Maybe".into()]).unwrap_err().field,
            "options[0]"
        );
        let multi = Poll::new("Days?", &["Mon".to_owned(), "Tue".to_owned()], true).unwrap();
        assert!(check_vote(&multi, &["Mon".into(), "Tue".into()]).is_ok());
        assert_eq!(
            check_vote(&multi, &["Mon".into(), "Mon".into()])
                .unwrap_err()
                .field,
            "options[1]"
        );
    }

    #[test]
    fn templates_are_named_as_meta_names_them() {
        let body =
            serde_json::json!({ "type": "body", "parameters": [{ "type": "text", "text": "42" }] });
        let t = Template::new(" order_ready ", "pt_BR", vec![body.clone()]).unwrap();
        assert_eq!(
            (t.name.as_str(), t.language.as_str()),
            ("order_ready", "pt_BR")
        );
        assert_eq!(t.summary(), "Template: order_ready (pt_BR)");
        assert!(Template::new("hello_world", "en", vec![]).is_ok());
        assert_eq!(
            Template::new("Order Ready", "en", vec![])
                .unwrap_err()
                .field,
            "name"
        );
        for bad in ["", "english", "en-US", "e_US", "en_U5"] {
            assert_eq!(
                Template::new("x", bad, vec![]).unwrap_err().field,
                "language",
                "{bad:?}"
            );
        }
        assert_eq!(
            Template::new("x", "en", vec![body, serde_json::json!("text")])
                .unwrap_err()
                .field,
            "components[1]"
        );
        let huge = serde_json::json!({ "type": "body", "text": "x".repeat(20_000) });
        assert_eq!(
            Template::new("x", "en", vec![huge]).unwrap_err().field,
            "components"
        );
    }

    /// A vote reads as what it did: picked options, a vote taken back, or one the engine
    /// could not open (never mistaken for a vote taken back).
    #[test]
    fn votes_are_summarised_by_what_they_did() {
        use crate::message::MessageKind::PollVote;
        let with = |vote: Option<Vec<String>>| Details {
            vote,
            ..Details::default()
        };
        let summary = |d: Details| d.summary_of(PollVote).unwrap();
        assert_eq!(
            summary(with(Some(vec!["Mon".into(), "Tue".into()]))),
            "Voted: Mon, Tue"
        );
        assert_eq!(summary(with(Some(vec![]))), "Took back a vote");
        assert_eq!(summary(with(None)), "Voted (the vote could not be read)");
    }

    fn phone(s: &str) -> Phone {
        Phone::parse(s).unwrap()
    }

    #[test]
    fn locations_are_on_the_globe() {
        let l = Location::new(30.0444, 31.2357, Some(" Cairo "), Some("")).unwrap();
        assert_eq!(l.name.as_deref(), Some("Cairo"));
        assert_eq!(l.address, None);
        assert_eq!(l.summary(), "Location: 30.0444, 31.2357 — Cairo");
        for (lat, lon, field) in [
            (90.5, 0.0, "latitude"),
            (f64::NAN, 0.0, "latitude"),
            (0.0, -180.1, "longitude"),
            (0.0, f64::INFINITY, "longitude"),
        ] {
            assert_eq!(
                Location::new(lat, lon, None, None).unwrap_err().field,
                field
            );
        }
        assert_eq!(
            Location::new(0.0, 0.0, Some("a\u{7}b"), None)
                .unwrap_err()
                .field,
            "name"
        );
        assert!(Location::received(91.0, 0.0, None, None).is_none());
        let r = Location::received(1.0, 2.0, Some("Shop\u{202E}gpj"), None).unwrap();
        assert_eq!(r.name.as_deref(), Some("Shopgpj"));
    }

    #[test]
    fn a_vcard_name_cannot_add_properties() {
        let c = ContactCard::new("Ana; Bo", phone("+201001234567"), "contacts[0].name").unwrap();
        let v = c.vcard();
        assert!(v.contains("FN:Ana\\; Bo\n"), "{v}");
        assert!(v.contains("waid=201001234567:+201001234567"), "{v}");
        // A newline in a caller's name is refused before it gets here; escaping is the
        // second line of defence.
        assert!(ContactCard::new("a\nTEL:1", phone("+201001234567"), "n").is_err());
        assert_eq!(vcard_escape("a\nTEL:1"), "a\\nTEL:1");
        let back = ContactCard::from_vcard(None, &v).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn hostile_vcards_are_read_for_what_they_tell() {
        let v = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Zed\u{202E}exe\r\nitem1.TEL;waid=447700900123:+44 7700 900123\r\nEND:VCARD";
        let c = ContactCard::from_vcard(None, v).unwrap();
        assert_eq!(c.name, "Zedexe");
        assert_eq!(c.phone, phone("+447700900123"));
        // WhatsApp's display name wins; a TEL without waid is read for its digits.
        let c = ContactCard::from_vcard(Some("Shop"), "FN:x\nTEL:+1 (555) 123-4567").unwrap();
        assert_eq!((c.name.as_str(), c.phone.digits()), ("Shop", "15551234567"));
        assert!(ContactCard::from_vcard(Some("x"), "FN:x\nTEL:12").is_none());
        assert!(ContactCard::from_vcard(None, "no card at all").is_none());
        assert!(ContactCard::from_vcard(None, &"TEL:+15551234567\n".repeat(10_000)).is_none());
        assert_eq!(
            contacts_summary(&[c.clone(), c]),
            "Contacts: Shop (+15551234567); Shop (+15551234567)"
        );
    }

    #[test]
    fn polls_have_two_to_twelve_distinct_options() {
        let opts = |n: usize| (0..n).map(|i| format!("o{i}")).collect::<Vec<_>>();
        let p = Poll::new(" Lunch? ", &opts(2), false).unwrap();
        assert_eq!(p.question, "Lunch?");
        assert_eq!(p.summary(), "Poll: Lunch?\n- o0\n- o1");
        assert_eq!(
            Poll::new("q", &opts(1), false).unwrap_err().field,
            "options"
        );
        assert_eq!(
            Poll::new("q", &opts(13), false).unwrap_err().field,
            "options"
        );
        assert!(Poll::new("q", &opts(12), true).is_ok());
        let dup = vec!["a".to_owned(), " a".to_owned()];
        assert_eq!(Poll::new("q", &dup, false).unwrap_err().field, "options[1]");
        let empty = vec!["a".to_owned(), " ".to_owned()];
        assert_eq!(
            Poll::new("q", &empty, false).unwrap_err().field,
            "options[1]"
        );
        assert_eq!(
            Poll::new(" ", &opts(2), false).unwrap_err().field,
            "question"
        );
        let long = "x".repeat(MAX_POLL_QUESTION_CHARS + 1);
        assert_eq!(
            Poll::new(&long, &opts(2), false).unwrap_err().field,
            "question"
        );
        let secret = p.clone().with_new_secret();
        assert_eq!(secret.secret_bytes().unwrap().len(), 32);
        assert_ne!(secret.secret, p.clone().with_new_secret().secret);
        let r = Poll::received(Some("Q"), ["a".into(), "".into()], Some(1), Some(&[7; 32]));
        assert_eq!(r.options, ["a"]);
        assert!(!r.multiple_answers);
        assert_eq!(r.secret_bytes(), Some(vec![7; 32]));
    }

    #[test]
    fn details_round_trip_and_fingerprint_without_the_secret() {
        let mut d = Details::default();
        assert!(d.is_empty());
        assert_eq!(d.to_json(), None);
        assert_eq!(Details::from_json(None).unwrap(), d);
        d.poll = Some(
            Poll::new("q", &["a".into(), "b".into()], true)
                .unwrap()
                .with_new_secret(),
        );
        d.reply_to = Some(Quote {
            provider_message_id: "3EB0AA".into(),
            from_me: false,
            from: Some(phone("+201001234567")),
            from_lid: None,
            text: Some("hi".into()),
        });
        d.mentions = vec![phone("+201001234567")];
        let json = d.to_json().unwrap();
        assert_eq!(Details::from_json(Some(&json)).unwrap(), d);
        let fp = d.request_fingerprint().unwrap();
        assert!(!fp.contains("secret"), "{fp}");
        let mut other = d.clone();
        other.poll.as_mut().unwrap().secret = None;
        assert_eq!(other.request_fingerprint().unwrap(), fp);
        assert_eq!(d.summary().as_deref(), Some("Poll: q\n- a\n- b"));
    }

    #[test]
    fn reactions_are_one_emoji_or_none() {
        for ok in ["", "👍", "❤️", "👍🏽", "👨\u{200D}👩\u{200D}👧"] {
            assert!(check_emoji(ok).is_ok(), "{ok}");
        }
        for bad in ["ok", "👍 ", "a👍", "1", "\n", &"👍".repeat(17)] {
            assert_eq!(check_emoji(bad).unwrap_err().field, "emoji", "{bad}");
        }
        assert_eq!(received_emoji("👍"), "👍");
        assert_eq!(received_emoji("x\u{202E}y"), "xy");
        use crate::message::MessageKind;
        let d = Details {
            emoji: Some("👍".into()),
            ..Details::default()
        };
        assert_eq!(
            d.summary_of(MessageKind::Reaction).as_deref(),
            Some("Reacted 👍")
        );
        assert_eq!(
            Details::default()
                .summary_of(MessageKind::Reaction)
                .as_deref(),
            Some("Removed a reaction")
        );
        assert_eq!(Details::default().summary_of(MessageKind::Edit), None);
        assert_eq!(
            Details::default()
                .summary_of(MessageKind::Delete)
                .as_deref(),
            Some("Deleted a message")
        );
    }

    #[test]
    fn mentions_are_listed_once() {
        let a = phone("+201001234567");
        assert!(check_mentions(std::slice::from_ref(&a)).is_ok());
        assert_eq!(
            check_mentions(&[a.clone(), a]).unwrap_err().field,
            "mentions[1]"
        );
    }
}
