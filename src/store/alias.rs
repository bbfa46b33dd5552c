//! Which conversation a user's message belongs to when Meta names the user in several ways: a
//! phone number (`wa_id`), a business-scoped user id (BSUID, `user_id`) and a parent BSUID
//! (`parent_user_id`), some of them withheld on some messages (`meta-formats.md` §12).
//!
//! **The rule: a conversation keeps the key it was created with**, and every other identifier of
//! its user becomes an *alias* of that key, per business number. A message's key is the stored
//! alias of its parent BSUID, else of its BSUID, else of its phone, else (a user never seen) its
//! phone when Meta shares it, else its BSUID ([`crate::domain::ContactId`]). So a user first seen
//! with a phone keeps that conversation when later messages carry only their BSUID, and a user
//! first seen by BSUID alone (a username user who never talked to the business) keeps theirs
//! when later messages carry the phone too. Keys never change and nothing is merged: a key is
//! what clients already hold (`/v1/conversations/{contact}`, the FastAPI list suffix).
//!
//! **Where aliases are written**: in the same atomic write as the message that shows them (the
//! Redis save script, the SQLite writer's transaction), never overwritten (Redis `HSETNX`,
//! SQLite `INSERT OR IGNORE`): a BSUID always (also when it is the key itself: that is how a
//! later message carrying the phone too finds the BSUID's conversation), a phone only when it
//! is not the key (a phone key needs no alias: it is the default). Redis keeps them in one hash
//! per business number, `<prefix>:alias:<phone_number_id>`; SQLite in `contact_aliases`.
//!
//! **How a write finds its key without a second round trip**: the writer is told a key (the
//! default, or one this cache knew) and checks it against the stored aliases in its atomic
//! step, together with the aliases the chunk's earlier messages add. When one differs, it
//! writes nothing and answers [`super::ChunkAnswer::Moved`] with the right keys; the store
//! writes the chunk again with them ([`super::Store::save_inbound`]). Aliases never change once
//! written, so the keys learned are kept in [`AliasCache`]: a user is moved at most once per
//! process, and the check also settles two instances racing on a new user's first messages.
//!
//! **Reads** (`/v1/conversations/{contact}/...`, the send window) follow the alias of the
//! identifier the client gave ([`super::Store::conversation_key`]), unless that identifier has a
//! conversation of its own.
//!
//! Not merged: two conversations that already exist for one user (stored before this release,
//! or a BSUID-only message from a user whose phone-keyed conversation never carried the BSUID)
//! stay two; later messages go to the one the aliases name, and each stays readable by its own
//! key.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::{ContactId, InboundMessage};

/// Most keys an [`AliasCache`] holds (about 150 bytes each); it starts over when full.
const CACHE_CAPACITY: usize = 65_536;

/// The identifiers of a message's user that the alias rule reads, in its order: parent BSUID,
/// BSUID, phone. A message without any (a `system` message about a changed user id) is known by
/// its key alone.
pub fn identities(message: &InboundMessage) -> Vec<&str> {
    let p = &message.profile;
    let mut ids: Vec<&str> = [
        p.parent_user_id.as_ref().map(|b| b.as_str()),
        p.user_id.as_ref().map(|b| b.as_str()),
        p.wa_id.as_ref().map(|w| w.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if ids.is_empty() {
        ids.push(message.from.as_str());
    }
    ids
}

/// Whether `identity` is stored as an alias of `key` (see the module doc: a BSUID always, a
/// phone unless it is the key). BSUIDs always contain a dot, phone digits never.
pub fn recorded(identity: &str, key: &str) -> bool {
    identity != key || identity.contains('.')
}

/// The first BSUID among a message's identities: once the message is stored, its alias is the
/// message's key (an alias stored earlier would have been the key the check asked for).
fn first_bsuid(message: &InboundMessage) -> Option<&str> {
    identities(message).into_iter().find(|id| id.contains('.'))
}

/// The keys this process learned, per business number and identifier: aliases are never
/// rewritten, so a cached key stays right. It holds what the store said (an alias a read found)
/// and, after a save, each message's first BSUID (its alias is certain once the message is
/// stored); never the absence of an alias (another instance may write one). It is a hint: a
/// save's keys are checked by the store all the same.
#[derive(Debug, Default)]
pub struct AliasCache {
    keys: Mutex<Keys>,
}

/// Business number -> BSUID -> key, and how many keys in all.
#[derive(Debug, Default)]
struct Keys {
    by_number: HashMap<String, HashMap<String, String>>,
    len: usize,
}

impl AliasCache {
    /// The key the cache knows for `message`'s user (of its first identifier cached), when it
    /// is not the message's own.
    pub fn known(&self, message: &InboundMessage) -> Option<ContactId> {
        let keys = self.keys.lock().expect("alias cache lock");
        let mine = keys.by_number.get(message.phone_number_id.as_str())?;
        let key = identities(message)
            .into_iter()
            .find_map(|id| mine.get(id))?;
        if key == message.from.as_str() {
            return None;
        }
        ContactId::parse(key).ok()
    }

    /// The key cached for `identity` with business number `phone_number_id`.
    pub fn get(&self, phone_number_id: &str, identity: &str) -> Option<String> {
        let keys = self.keys.lock().expect("alias cache lock");
        keys.by_number.get(phone_number_id)?.get(identity).cloned()
    }

    /// Remembers that `message`'s user has the conversation it was just stored in.
    pub fn learn(&self, message: &InboundMessage) {
        if let Some(bsuid) = first_bsuid(message) {
            self.remember(
                message.phone_number_id.as_str(),
                bsuid,
                message.from.as_str(),
            );
        }
    }

    /// Remembers that `identity` names conversation `key` of `phone_number_id` (the store said
    /// so).
    pub fn remember(&self, phone_number_id: &str, identity: &str, key: &str) {
        let mut keys = self.keys.lock().expect("alias cache lock");
        let known = keys
            .by_number
            .get(phone_number_id)
            .and_then(|m| m.get(identity));
        if known.is_some_and(|k| k == key) {
            return;
        }
        if keys.len >= CACHE_CAPACITY {
            *keys = Keys::default();
        }
        keys.len += 1;
        keys.by_number
            .entry(phone_number_id.to_owned())
            .or_default()
            .insert(identity.to_owned(), key.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        Bsuid, ContactProfile, Content, MessageId, MessageKind, Origin, PhoneNumber, PhoneNumberId,
    };

    fn message(from: &str, phone: Option<&str>, bsuid: Option<&str>) -> InboundMessage {
        InboundMessage {
            id: MessageId::parse("wamid.A").unwrap(),
            from: ContactId::parse(from).unwrap(),
            origin: Origin::User,
            profile: ContactProfile {
                wa_id: phone.map(|p| PhoneNumber::parse(p).unwrap()),
                user_id: bsuid.map(|b| Bsuid::parse(b).unwrap()),
                ..ContactProfile::default()
            },
            to: "15550783881".into(),
            phone_number_id: PhoneNumberId::parse("1065").unwrap(),
            timestamp: "1749416383".into(),
            kind: MessageKind::Text,
            body: "hi".into(),
            raw: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            content: Content::Text { body: "hi".into() },
            context: None,
            referral: None,
            errors: Vec::new(),
            group_id: None,
        }
    }

    const PHONE: &str = "16505551234";
    const USER: &str = "US.13491208655302741918";

    #[test]
    fn identities_come_parent_first_and_a_message_without_any_is_known_by_its_key() {
        let mut m = message(PHONE, Some(PHONE), Some(USER));
        m.profile.parent_user_id = Some(Bsuid::parse("US.ENT.1181").unwrap());
        assert_eq!(identities(&m), ["US.ENT.1181", USER, PHONE]);
        assert_eq!(identities(&message(USER, None, None)), [USER]);
    }

    #[test]
    fn a_bsuid_is_always_recorded_and_a_phone_only_when_it_is_not_the_key() {
        assert!(recorded(USER, USER));
        assert!(recorded(USER, PHONE));
        assert!(recorded(PHONE, USER));
        assert!(!recorded(PHONE, PHONE));
    }

    #[test]
    fn a_save_teaches_the_cache_a_user_s_first_bsuid_and_a_read_any_alias_found() {
        let cache = AliasCache::default();
        // Stored under the BSUID; the user's next message, carrying the phone too, is moved.
        cache.learn(&message(USER, None, Some(USER)));
        let next = message(PHONE, Some(PHONE), Some(USER));
        assert_eq!(cache.known(&next), Some(ContactId::parse(USER).unwrap()));
        // Already under its key: nothing to move.
        assert_eq!(cache.known(&message(USER, None, Some(USER))), None);
        // A save never teaches a phone (another instance may alias it later); a read that
        // found its alias does.
        cache.learn(&message(PHONE, Some(PHONE), None));
        assert_eq!(cache.known(&message(PHONE, Some(PHONE), None)), None);
        cache.remember("1065", PHONE, USER);
        assert_eq!(
            cache.known(&message(PHONE, Some(PHONE), None)),
            Some(ContactId::parse(USER).unwrap())
        );
        assert_eq!(cache.get("1065", PHONE).as_deref(), Some(USER));
        // Another business number knows nothing of it.
        let mut elsewhere = next.clone();
        elsewhere.phone_number_id = PhoneNumberId::parse("2000").unwrap();
        assert_eq!(cache.known(&elsewhere), None);
    }
}
