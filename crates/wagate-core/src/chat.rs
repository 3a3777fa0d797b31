//! Whom a message goes to: a phone number or a WhatsApp group, and what wagate knows of a
//! group (its subject, its members and their roles).
//!
//! A message's recipient is kept as one string everywhere (store columns, idempotency
//! fingerprints): a phone's digits or a group's JID. The two cannot be confused — a phone
//! is at most 15 digits and never contains `@`, a group id always ends in `@g.us` — so
//! rows written before groups existed read back unchanged.

use crate::phone::{InvalidPhone, Phone};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A WhatsApp group's JID as the APIs show it: `120363012345678901@g.us` (or the older
/// `<creator>-<seconds>@g.us`). Valid by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupId(String);

/// Why a string is not a group id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a WhatsApp group id such as 120363012345678901@g.us")]
pub struct InvalidGroupId;

impl GroupId {
    /// `^[0-9]{5,25}(-[0-9]{5,15})?@g\.us$`: WhatsApp's group JIDs, nothing else (a phone
    /// or a LID given where a group belongs is the caller's mistake, not a guess to make).
    pub fn parse(s: &str) -> Result<Self, InvalidGroupId> {
        let user = s.strip_suffix("@g.us").ok_or(InvalidGroupId)?;
        let (id, suffix) = match user.split_once('-') {
            Some((a, b)) => (a, Some(b)),
            None => (user, None),
        };
        let digits = |s: &str, range: std::ops::RangeInclusive<usize>| {
            range.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
        };
        if digits(id, 5..=25) && suffix.is_none_or(|s| digits(s, 5..=15)) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidGroupId)
        }
    }

    /// The JID, `…@g.us`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before `@g.us`, as WhatsApp's protocol addresses it.
    pub fn user(&self) -> &str {
        self.0.strip_suffix("@g.us").unwrap_or(&self.0)
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for GroupId {
    type Error = InvalidGroupId;
    fn try_from(s: String) -> Result<Self, InvalidGroupId> {
        Self::parse(&s)
    }
}

impl From<GroupId> for String {
    fn from(g: GroupId) -> String {
        g.0
    }
}

/// Whom a message is sent to, or which chat an action happens in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Recipient {
    Phone(Phone),
    Group(GroupId),
}

impl Recipient {
    /// The stored form back: a phone's digits (with or without `+`) or a group id.
    pub fn parse(s: &str) -> Result<Self, InvalidPhone> {
        if s.ends_with("@g.us") {
            GroupId::parse(s).map(Self::Group).map_err(|_| InvalidPhone)
        } else {
            Phone::parse(s).map(Self::Phone)
        }
    }

    /// The stored form: a phone's digits, or the group's JID.
    pub fn key(&self) -> &str {
        match self {
            Self::Phone(p) => p.digits(),
            Self::Group(g) => g.as_str(),
        }
    }

    pub fn phone(&self) -> Option<&Phone> {
        match self {
            Self::Phone(p) => Some(p),
            Self::Group(_) => None,
        }
    }

    pub fn group(&self) -> Option<&GroupId> {
        match self {
            Self::Group(g) => Some(g),
            Self::Phone(_) => None,
        }
    }

    pub fn is_group(&self) -> bool {
        matches!(self, Self::Group(_))
    }
}

impl From<Phone> for Recipient {
    fn from(p: Phone) -> Self {
        Self::Phone(p)
    }
}

impl From<GroupId> for Recipient {
    fn from(g: GroupId) -> Self {
        Self::Group(g)
    }
}

/// `+<digits>` for a phone, the JID for a group, as the APIs show it.
impl Serialize for Recipient {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Recipient {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s)
            .map_err(|_| serde::de::Error::custom("must be a phone number or a WhatsApp group id"))
    }
}

/// `+<digits>` for a phone, the JID for a group: what error messages and logs show.
impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Phone(p) => p.fmt(f),
            Self::Group(g) => g.fmt(f),
        }
    }
}

/// A member's standing in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupRole {
    Member,
    Admin,
    /// The group's creator (WhatsApp's "superadmin").
    Owner,
}

impl GroupRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    pub fn is_admin(self) -> bool {
        !matches!(self, Self::Member)
    }
}

/// One member of a group. WhatsApp may name a member by LID only; `phone` is filled
/// whenever the LID can be resolved (the group's own metadata carries the number in LID
/// mode), so callers see numbers, not opaque ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupMember {
    pub phone: Option<Phone>,
    pub lid: Option<String>,
    pub role: GroupRole,
}

/// What wagate knows of a group a device is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub id: GroupId,
    pub subject: String,
    /// The device's own standing; `None` when it is no longer a member.
    pub own_role: Option<GroupRole>,
    /// Every member (empty in listings that do not carry them; see `size`).
    pub members: Vec<GroupMember>,
    pub size: usize,
    pub created_at: Option<Timestamp>,
}

/// A change to a group's membership, asked for by a device or seen by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MembershipChange {
    Add,
    Remove,
    Promote,
    Demote,
    /// A member left by themself (seen only; a device leaves with its own call).
    Leave,
}

impl MembershipChange {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Remove => "remove",
            Self::Promote => "promote",
            Self::Demote => "demote",
            Self::Leave => "leave",
        }
    }
}

/// What became of one member in a membership change a device asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberOutcome {
    pub phone: Phone,
    pub change: MembershipChange,
    /// `None`: done; otherwise why not (not on WhatsApp, not a member, already one).
    pub error: Option<String>,
}

/// A membership change in a group, as a device saw it happen (stored with the inbound
/// row that reports it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupChange {
    pub action: MembershipChange,
    /// The members it concerns (numbers, LIDs resolved where possible).
    pub participants: Vec<GroupMember>,
}

/// How many members a group may start with or be given in one call: WhatsApp's own
/// limit for a group is 1024, and a call naming more is refused before it is sent.
pub const MAX_MEMBERS_PER_CALL: usize = 256;

/// A group subject as WhatsApp takes it: trimmed, 1 to 100 characters, no control
/// characters.
pub fn check_subject(subject: &str) -> Result<String, &'static str> {
    let s = subject.trim();
    if s.is_empty() {
        return Err("must not be empty");
    }
    if s.chars().count() > 100 {
        return Err("must be at most 100 characters");
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_are_whatsapp_group_jids_only() {
        for ok in [
            "120363012345678901@g.us",
            "201001234567-1600000000@g.us",
            "12345@g.us",
        ] {
            assert_eq!(GroupId::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "120363012345678901",
            "+201001234567",
            "abc@g.us",
            "1234@g.us",
            "120363012345678901@s.whatsapp.net",
            "12345-@g.us",
            "-12345@g.us",
            "12345-abc@g.us",
            "@g.us",
            "",
        ] {
            assert!(GroupId::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            GroupId::parse("120363012345678901@g.us").unwrap().user(),
            "120363012345678901"
        );
    }

    #[test]
    fn a_recipient_reads_back_from_its_stored_form() {
        for r in [
            Recipient::Phone(Phone::parse("+201001234567").unwrap()),
            Recipient::Group(GroupId::parse("120363012345678901@g.us").unwrap()),
        ] {
            assert_eq!(Recipient::parse(r.key()).unwrap(), r);
        }
        assert!(Recipient::parse("x@g.us").is_err());
        assert_eq!(
            Recipient::parse("+201001234567").unwrap().to_string(),
            "+201001234567"
        );
    }

    #[test]
    fn subjects_are_trimmed_and_bounded() {
        assert_eq!(check_subject("  Team  ").unwrap(), "Team");
        assert!(check_subject("   ").is_err());
        assert!(check_subject(&"x".repeat(101)).is_err());
        assert!(check_subject("a\u{7}b").is_err());
        assert_eq!(
            check_subject(&"é".repeat(100)).unwrap().chars().count(),
            100
        );
    }
}
