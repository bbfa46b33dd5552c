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
//! writes nothing and answers `Moved` with the right keys; the store
//! writes the chunk again with them ([`super::Store::save_inbound`]). Aliases never change once
//! written, so the keys learned are kept in `AliasCache`: a user is moved at most once per
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
/// its key alone. Never empty.
pub(crate) fn identities(message: &InboundMessage) -> impl Iterator<Item = &str> {
    let p = &message.profile;
    let ids = [
        p.parent_user_id.as_ref().map(|b| b.as_str()),
        p.user_id.as_ref().map(|b| b.as_str()),
        p.wa_id.as_ref().map(|w| w.as_str()),
    ];
    let none = ids.iter().all(Option::is_none);
    ids.into_iter()
        .flatten()
        .chain(none.then(|| message.from.as_str()))
}

/// Whether `identity` is stored as an alias of `key` (see the module doc: a BSUID always, a
/// phone unless it is the key). BSUIDs always contain a dot, phone digits never.
pub(crate) fn recorded(identity: &str, key: &str) -> bool {
    identity != key || identity.contains('.')
}

/// The keys this process learned, per business number and identifier: aliases are never
/// rewritten, so a cached key stays right; the absence of an alias is never cached (another
/// instance may write one). Two kinds of entries:
/// - what a save taught ([`Self::learn`]): a stored message's first identifier, whose alias is
///   its key once the message is stored (an alias stored earlier would have been the key the
///   check asked for; a missing one was written), when that identifier is recorded at all. A
///   hint for later saves only: the store checks a save's keys all the same;
/// - what a read found ([`Self::remember_read`]): the key a client's identifier resolves to,
///   which reads may use too (it honours the rule that a contact with a conversation of its
///   own is its own key).
#[derive(Debug, Default)]
pub(crate) struct AliasCache {
    keys: Mutex<Keys>,
}

/// Business number -> identifier -> key, and how many keys in all.
#[derive(Debug, Default)]
struct Keys {
    by_number: HashMap<String, HashMap<String, Entry>>,
    len: usize,
}

#[derive(Debug)]
struct Entry {
    key: ContactId,
    /// A read found it (else a save taught it).
    read: bool,
}

impl AliasCache {
    /// The key the cache knows for `message`'s user (of its first identifier cached), when it
    /// is not the message's own.
    pub(crate) fn known(&self, message: &InboundMessage) -> Option<ContactId> {
        let keys = self.keys.lock().expect("alias cache lock");
        let mine = keys.by_number.get(message.phone_number_id.as_str())?;
        let entry = identities(message).find_map(|id| mine.get(id))?;
        (entry.key != message.from).then(|| entry.key.clone())
    }

    /// The key a read found for `identity` with business number `phone_number_id`.
    pub(crate) fn read(&self, phone_number_id: &str, identity: &str) -> Option<ContactId> {
        let keys = self.keys.lock().expect("alias cache lock");
        let entry = keys.by_number.get(phone_number_id)?.get(identity)?;
        entry.read.then(|| entry.key.clone())
    }

    /// Remembers the key of `message`'s user: the conversation it was just stored in (or is
    /// about to be, the store said), under its first identifier when that one is recorded.
    pub(crate) fn learn(&self, message: &InboundMessage) {
        let first = identities(message).next().expect("never empty");
        if recorded(first, message.from.as_str()) {
            self.insert(
                message.phone_number_id.as_str(),
                first,
                &message.from,
                false,
            );
        }
    }

    /// Remembers that a read found `identity` to name conversation `key` of
    /// `phone_number_id`.
    pub(crate) fn remember_read(&self, phone_number_id: &str, identity: &str, key: &ContactId) {
        self.insert(phone_number_id, identity, key, true);
    }

    fn insert(&self, phone_number_id: &str, identity: &str, key: &ContactId, read: bool) {
        let mut keys = self.keys.lock().expect("alias cache lock");
        if let Some(entry) = keys
            .by_number
            .get_mut(phone_number_id)
            .and_then(|m| m.get_mut(identity))
            .filter(|e| e.key == *key)
        {
            entry.read |= read;
            return;
        }
        if keys.len >= CACHE_CAPACITY {
            *keys = Keys::default();
        }
        keys.len += 1;
        let entry = Entry {
            key: key.clone(),
            read,
        };
        keys.by_number
            .entry(phone_number_id.to_owned())
            .or_default()
            .insert(identity.to_owned(), entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Bsuid, PhoneNumberId};
    use crate::store::record::tests::message_from;

    /// A message of a user known by `phone` and/or `bsuid`, under key `from`.
    fn message(from: &str, phone: Option<&str>, bsuid: Option<&str>) -> InboundMessage {
        let mut m = message_from("wamid.A", phone, bsuid);
        m.from = ContactId::parse(from).unwrap();
        m
    }

    const PHONE: &str = "16505551234";
    const USER: &str = "US.13491208655302741918";

    fn key(s: &str) -> ContactId {
        ContactId::parse(s).unwrap()
    }

    #[test]
    fn identities_come_parent_first_and_a_message_without_any_is_known_by_its_key() {
        let mut m = message(PHONE, Some(PHONE), Some(USER));
        m.profile.parent_user_id = Some(Bsuid::parse("US.ENT.1181").unwrap());
        assert_eq!(
            identities(&m).collect::<Vec<_>>(),
            ["US.ENT.1181", USER, PHONE]
        );
        let mut system = message(USER, None, Some(USER));
        system.profile = Default::default();
        assert_eq!(identities(&system).collect::<Vec<_>>(), [USER]);
    }

    #[test]
    fn a_bsuid_is_always_recorded_and_a_phone_only_when_it_is_not_the_key() {
        assert!(recorded(USER, USER));
        assert!(recorded(USER, PHONE));
        assert!(recorded(PHONE, USER));
        assert!(!recorded(PHONE, PHONE));
    }

    #[test]
    fn a_save_teaches_the_cache_a_recorded_first_identifier_and_a_read_what_it_found() {
        let cache = AliasCache::default();
        // Stored under the BSUID; the user's next message, carrying the phone too, is moved.
        cache.learn(&message(USER, None, Some(USER)));
        let next = message(PHONE, Some(PHONE), Some(USER));
        assert_eq!(cache.known(&next), Some(key(USER)));
        // Already under its key: nothing to move.
        assert_eq!(cache.known(&message(USER, None, Some(USER))), None);
        // A phone stored under itself is no alias: nothing is cached (another instance may give
        // it one later).
        cache.learn(&message(PHONE, Some(PHONE), None));
        assert_eq!(cache.known(&message(PHONE, Some(PHONE), None)), None);
        // A phone-only message stored under the BSUID teaches the phone's alias.
        cache.learn(&message(USER, Some(PHONE), None));
        assert_eq!(
            cache.known(&message(PHONE, Some(PHONE), None)),
            Some(key(USER))
        );
        // Reads use only what a read found.
        assert_eq!(cache.read("1065", PHONE), None);
        cache.remember_read("1065", PHONE, &key(USER));
        assert_eq!(cache.read("1065", PHONE), Some(key(USER)));
        // Another business number knows nothing of it.
        let mut elsewhere = next.clone();
        elsewhere.phone_number_id = PhoneNumberId::parse("2000").unwrap();
        assert_eq!(cache.known(&elsewhere), None);
    }
}
