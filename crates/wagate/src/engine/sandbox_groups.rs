//! Groups on the sandbox network: who is in them, in what role, and what WhatsApp's rules
//! make of a change (only admins change members; an owner cannot be removed; a number
//! not on WhatsApp cannot be added).
//!
//! Pure rules over [`SandboxGroup`], so they can be tested without a network; the network
//! ([`super::sandbox`]) keeps the groups, journals each change (a group survives a restart
//! like the messages in flight) and tells the members' devices what changed.

use serde::{Deserialize, Serialize};
use wagate_core::chat::{GroupInfo, GroupMember, GroupRole, MemberOutcome, MembershipChange};
use wagate_core::{GroupId, Phone, time};

/// One group as the sandbox's server keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SandboxGroup {
    pub id: GroupId,
    pub subject: String,
    /// Members by number (digits), in the order they joined.
    pub members: Vec<(String, GroupRole)>,
    pub created_ms: i64,
    /// The invite link's code.
    pub invite: String,
}

/// Numbers ending in `0000` are not on WhatsApp on the sandbox network.
pub(super) fn on_whatsapp(digits: &str) -> bool {
    !digits.ends_with("0000")
}

impl SandboxGroup {
    /// A new group owned by `owner`, with those of `members` that are on WhatsApp.
    pub fn create(id: GroupId, subject: &str, owner: &Phone, members: &[Phone]) -> Self {
        let mut all = vec![(owner.digits().to_owned(), GroupRole::Owner)];
        for m in members {
            if on_whatsapp(m.digits()) && !all.iter().any(|(p, _)| p == m.digits()) {
                all.push((m.digits().to_owned(), GroupRole::Member));
            }
        }
        Self {
            id,
            subject: subject.to_owned(),
            members: all,
            created_ms: time::millis(time::now()),
            invite: invite_code(),
        }
    }

    pub fn role_of(&self, digits: &str) -> Option<GroupRole> {
        self.members
            .iter()
            .find(|(p, _)| p == digits)
            .map(|(_, r)| *r)
    }

    /// Member numbers (digits).
    pub fn numbers(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|(p, _)| p.as_str())
    }

    /// The group as `viewer` (digits) sees it; members only when `with_members`.
    pub fn info(&self, viewer: &str, with_members: bool) -> GroupInfo {
        GroupInfo {
            id: self.id.clone(),
            subject: self.subject.clone(),
            own_role: self.role_of(viewer),
            members: if with_members {
                self.members
                    .iter()
                    .map(|(p, role)| GroupMember {
                        phone: Phone::parse(p).ok(),
                        lid: None,
                        role: *role,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            size: self.members.len(),
            created_at: Some(time::from_millis(self.created_ms)),
        }
    }

    /// Applies `change` to `targets` on behalf of `actor` (digits), who must be an admin:
    /// what became of each. `Err` when the actor may not change members at all.
    pub fn change(
        &mut self,
        actor: &str,
        change: MembershipChange,
        targets: &[Phone],
    ) -> Result<Vec<MemberOutcome>, String> {
        if !self.role_of(actor).is_some_and(GroupRole::is_admin) {
            return Err(format!(
                "only the admins of group {} can change its members",
                self.id
            ));
        }
        let outcomes = targets
            .iter()
            .map(|t| MemberOutcome {
                phone: t.clone(),
                change,
                error: self.apply(t.digits(), change).err(),
            })
            .collect();
        Ok(outcomes)
    }

    fn apply(&mut self, who: &str, change: MembershipChange) -> Result<(), String> {
        let at = self.members.iter().position(|(p, _)| p == who);
        match (change, at) {
            (MembershipChange::Add, Some(_)) => Err("already a member".into()),
            (MembershipChange::Add, None) if !on_whatsapp(who) => Err("not on WhatsApp".into()),
            (MembershipChange::Add, None) => {
                self.members.push((who.to_owned(), GroupRole::Member));
                Ok(())
            }
            (_, None) => Err("not a member".into()),
            (_, Some(i)) if self.members[i].1 == GroupRole::Owner => {
                Err("is the group's owner".into())
            }
            (MembershipChange::Remove | MembershipChange::Leave, Some(i)) => {
                self.members.remove(i);
                Ok(())
            }
            (MembershipChange::Promote, Some(i)) => {
                self.members[i].1 = GroupRole::Admin;
                Ok(())
            }
            (MembershipChange::Demote, Some(i)) => {
                self.members[i].1 = GroupRole::Member;
                Ok(())
            }
        }
    }

    /// `who` leaves. An owner who leaves hands the group to the longest-standing admin,
    /// else member, as WhatsApp does. `false` when `who` was not a member.
    pub fn leave(&mut self, who: &str) -> bool {
        let Some(i) = self.members.iter().position(|(p, _)| p == who) else {
            return false;
        };
        let (_, role) = self.members.remove(i);
        if role == GroupRole::Owner && !self.members.iter().any(|(_, r)| *r == GroupRole::Owner) {
            let heir = self
                .members
                .iter()
                .position(|(_, r)| *r == GroupRole::Admin)
                .or(if self.members.is_empty() {
                    None
                } else {
                    Some(0)
                });
            if let Some(h) = heir {
                self.members[h].1 = GroupRole::Owner;
            }
        }
        true
    }
}

/// A WhatsApp-shaped id for a new group: `120363` and 12 more digits.
pub(super) fn new_group_id() -> GroupId {
    use rand::Rng;
    loop {
        let n: u64 = rand::thread_rng().gen_range(100_000_000_000..1_000_000_000_000);
        // Always well-formed; the loop only keeps the type honest without a panic.
        if let Ok(id) = GroupId::parse(&format!("120363{n}@g.us")) {
            return id;
        }
    }
}

fn invite_code() -> String {
    use rand::Rng;
    use rand::distributions::Alphanumeric;
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(22)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(s: &str) -> Phone {
        Phone::parse(s).unwrap()
    }

    #[test]
    fn only_admins_change_members_and_the_rules_hold() {
        let owner = phone("+15550001001");
        let (a, b, off) = (
            phone("+15550001002"),
            phone("+15550001003"),
            phone("+15550010000"),
        );
        let mut g = SandboxGroup::create(new_group_id(), "T", &owner, &[a.clone(), off.clone()]);
        assert_eq!(g.members.len(), 2, "the number not on WhatsApp is left out");
        assert!(
            g.change(a.digits(), MembershipChange::Add, std::slice::from_ref(&b))
                .is_err()
        );
        let out = g
            .change(
                owner.digits(),
                MembershipChange::Add,
                &[b.clone(), a.clone(), off],
            )
            .unwrap();
        let errors: Vec<_> = out.iter().map(|o| o.error.as_deref()).collect();
        assert_eq!(
            errors,
            [None, Some("already a member"), Some("not on WhatsApp")]
        );
        g.change(
            owner.digits(),
            MembershipChange::Promote,
            std::slice::from_ref(&a),
        )
        .unwrap();
        let out = g
            .change(
                a.digits(),
                MembershipChange::Remove,
                &[owner.clone(), b.clone()],
            )
            .unwrap();
        assert_eq!(out[0].error.as_deref(), Some("is the group's owner"));
        assert_eq!(out[1].error, None);
        assert_eq!(g.role_of(b.digits()), None);
        assert!(g.leave(owner.digits()));
        assert_eq!(
            g.role_of(a.digits()),
            Some(GroupRole::Owner),
            "the admin inherits"
        );
        let info = g.info(a.digits(), true);
        assert_eq!((info.size, info.own_role), (1, Some(GroupRole::Owner)));
        assert!(info.id.as_str().starts_with("120363"));
    }
}
