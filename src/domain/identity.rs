//! Who a message is between: the business number it arrived on ([`PhoneNumberId`], the tenant every
//! record and dedupe key is scoped by) and the user ([`ContactId`]: their phone digits when Meta
//! shares them, else their business-scoped user id, [`Bsuid`]).
//!
//! From 2026 Meta may withhold a user's phone number and identify them only by a BSUID such as
//! `US.13491208655302741918` (or a parent BSUID `US.ENT.11815799212886844830`). A contact is keyed
//! by its `wa_id` when Meta sends one, else by its BSUID, so messages from one user stay in one
//! conversation as long as Meta keeps sending the same identifier.

use std::fmt;

use serde::Serialize;

use crate::domain::PhoneNumber;

/// Longest phone-number id accepted (Meta's are about 15 digits).
pub const MAX_PHONE_NUMBER_ID_LEN: usize = 64;
/// Longest BSUID accepted (Meta's are about 25 characters today). Meta allows a country code, a
/// dot and up to 128 letters and digits (3 + 128); a parent BSUID adds a segment (`ENT.`, 4),
/// with room for a longer one (8 in all).
pub const MAX_BSUID_LEN: usize = 3 + 128 + 8;

/// A business phone-number id (`metadata.phone_number_id`): 1 to 64 ASCII letters, digits, `-` or
/// `_`. Meta's are digits; test tools use other short names, and they are key parts, so nothing
/// that could break a key (`:`, spaces, `*`) gets in.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumberId(String);

/// Why a string is not a phone-number id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneNumberIdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_PHONE_NUMBER_ID_LEN} characters")]
    TooLong,
    #[error("must contain only letters, digits, '-' or '_'")]
    InvalidCharacter,
}

impl PhoneNumberId {
    /// Parses an id as Meta sends it.
    pub fn parse(input: &str) -> Result<Self, PhoneNumberIdError> {
        if input.is_empty() {
            return Err(PhoneNumberIdError::Empty);
        }
        if input.len() > MAX_PHONE_NUMBER_ID_LEN {
            return Err(PhoneNumberIdError::TooLong);
        }
        if !input
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(PhoneNumberIdError::InvalidCharacter);
        }
        Ok(Self(input.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tenant of notifications that carry no `metadata.phone_number_id` (the FastAPI
    /// original's examples, hand-written tests): `unknown`.
    pub fn unknown() -> Self {
        Self("unknown".to_owned())
    }
}

impl fmt::Display for PhoneNumberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PhoneNumberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumberId({})", self.0)
    }
}

impl Serialize for PhoneNumberId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A business-scoped user id: a two-letter country code, then one or more `.`-separated
/// segments of ASCII letters and digits (`US.13491208655302741918`, `US.ENT.1181…`), at most
/// [`MAX_BSUID_LEN`] characters. Kept verbatim: Meta refuses an altered BSUID.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bsuid(String);

/// Why a string is not a BSUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BsuidError {
    #[error(
        "must be a business-scoped user id: two capital letters, a dot, then letters and digits (e.g. US.13491208655302741918)"
    )]
    Format,
    #[error("must be at most {MAX_BSUID_LEN} characters")]
    TooLong,
}

impl Bsuid {
    /// Parses a BSUID as Meta sends it.
    pub fn parse(input: &str) -> Result<Self, BsuidError> {
        if input.len() > MAX_BSUID_LEN {
            return Err(BsuidError::TooLong);
        }
        let bytes = input.as_bytes();
        let country = bytes.len() > 3
            && bytes[0].is_ascii_uppercase()
            && bytes[1].is_ascii_uppercase()
            && bytes[2] == b'.';
        let segments_ok = country
            && input[3..]
                .split('.')
                .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !segments_ok {
            return Err(BsuidError::Format);
        }
        Ok(Self(input.to_owned()))
    }

    /// The BSUID as Meta sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The country code and the last four characters, for logs.
    pub fn masked(&self) -> String {
        let tail = &self.0[self.0.len().saturating_sub(4).max(3)..];
        format!("{}.***{tail}", &self.0[..2])
    }

    /// Whether `input` looks like a BSUID rather than a phone number (starts with two letters
    /// and a dot): decides which parser names the error for a bad contact.
    pub fn looks_like(input: &str) -> bool {
        let b = input.trim().as_bytes();
        b.len() > 2 && b[0].is_ascii_alphabetic() && b[1].is_ascii_alphabetic() && b[2] == b'.'
    }
}

impl fmt::Debug for Bsuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bsuid({})", self.masked())
    }
}

impl fmt::Display for Bsuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The user a conversation is with: their phone digits when known, else their BSUID.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContactId {
    /// `wa_id` / `from`: phone digits.
    Phone(PhoneNumber),
    /// `user_id` / `from_user_id`: a BSUID, when Meta withheld the phone.
    User(Bsuid),
}

/// Why a string is neither a phone number nor a BSUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContactIdError {
    #[error(transparent)]
    Phone(#[from] crate::domain::phone_number::PhoneNumberError),
    #[error(transparent)]
    Bsuid(#[from] BsuidError),
}

impl ContactId {
    /// Parses a contact as a client writes it: a BSUID (`US.1349…`) or a phone number in any
    /// accepted form.
    pub fn parse(input: &str) -> Result<Self, ContactIdError> {
        if Bsuid::looks_like(input) {
            Ok(Self::User(Bsuid::parse(input.trim())?))
        } else {
            Ok(Self::Phone(PhoneNumber::parse(input)?))
        }
    }

    /// The key part: the digits or the BSUID. Digits never contain a dot and BSUIDs always do,
    /// so the two kinds never collide.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Phone(p) => p.as_str(),
            Self::User(u) => u.as_str(),
        }
    }

    /// A form safe for logs.
    pub fn masked(&self) -> String {
        match self {
            Self::Phone(p) => p.masked(),
            Self::User(u) => u.masked(),
        }
    }

    /// The phone number, when this contact is keyed by one.
    pub fn phone(&self) -> Option<&PhoneNumber> {
        match self {
            Self::Phone(p) => Some(p),
            Self::User(_) => None,
        }
    }
}

impl fmt::Debug for ContactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContactId({})", self.masked())
    }
}

impl fmt::Display for ContactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ContactId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bsuids_of_meta_examples_parse_verbatim() {
        for s in [
            "US.13491208655302741918",
            "US.ENT.11815799212886844830",
            "MX.0987654321",
            "CO.1234567890",
        ] {
            assert_eq!(Bsuid::parse(s).unwrap().as_str(), s);
        }
    }

    #[test]
    fn malformed_bsuids_are_refused() {
        for s in [
            "",
            "US",
            "US.",
            "us.123",
            "U1.123",
            "US..123",
            "US.123.",
            "US.12 3",
            "US.12:3",
            "919216598210",
        ] {
            assert_eq!(Bsuid::parse(s), Err(BsuidError::Format), "{s:?}");
        }
        assert_eq!(
            Bsuid::parse(&format!("US.{}", "1".repeat(200))),
            Err(BsuidError::TooLong)
        );
        // Meta's longest: a country code, a dot and 128 alphanumerics, also as a parent.
        let longest = format!("US.{}", "a1".repeat(64));
        assert_eq!(Bsuid::parse(&longest).unwrap().as_str(), longest);
        let parent = format!("US.ENT.{}", "9".repeat(128));
        assert!(Bsuid::parse(&parent).is_ok());
        assert_eq!(
            Bsuid::parse(&format!("US.ENT.{}", "9".repeat(133))),
            Err(BsuidError::TooLong)
        );
    }

    #[test]
    fn a_contact_is_a_bsuid_or_a_phone_number() {
        assert_eq!(
            ContactId::parse("+91 92165-98210").unwrap(),
            ContactId::Phone(PhoneNumber::parse("919216598210").unwrap())
        );
        assert_eq!(
            ContactId::parse("US.13491208655302741918")
                .unwrap()
                .as_str(),
            "US.13491208655302741918"
        );
        assert!(matches!(
            ContactId::parse("US.12:3"),
            Err(ContactIdError::Bsuid(_))
        ));
        assert!(matches!(
            ContactId::parse("12ab"),
            Err(ContactIdError::Phone(_))
        ));
    }

    #[test]
    fn masked_forms_hide_the_identifier() {
        let user = ContactId::parse("US.13491208655302741918").unwrap();
        assert_eq!(user.masked(), "US.***1918");
        assert!(!format!("{user:?}").contains("134912086553"));
    }

    #[test]
    fn phone_number_ids_are_key_safe() {
        assert_eq!(
            PhoneNumberId::parse("106540352242922").unwrap().as_str(),
            "106540352242922"
        );
        assert_eq!(PhoneNumberId::parse(""), Err(PhoneNumberIdError::Empty));
        for s in ["a:b", "a b", "a*", "é"] {
            assert_eq!(
                PhoneNumberId::parse(s),
                Err(PhoneNumberIdError::InvalidCharacter),
                "{s:?}"
            );
        }
        assert_eq!(
            PhoneNumberId::parse(&"1".repeat(65)),
            Err(PhoneNumberIdError::TooLong)
        );
    }
}
