//! [`MessageId`]: a WhatsApp message id (`wamid.…`), the key Meta's retries are deduplicated on.

use std::fmt;

/// Longest id accepted. Real wamids are about 60 characters; the bound keeps a hostile payload from
/// making us store megabyte-long Redis keys.
pub const MAX_LEN: usize = 256;

/// A non-empty message id of printable ASCII without spaces, at most [`MAX_LEN`] bytes.
///
/// We do not require the `wamid.` prefix: older and test payloads use other forms, and rejecting a
/// real Meta delivery would make Meta retry it for seven days.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MessageId(String);

/// Why a string is not a message id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageIdError {
    /// Empty string.
    #[error("must not be empty")]
    Empty,
    /// Longer than [`MAX_LEN`].
    #[error("must be at most {MAX_LEN} characters")]
    TooLong,
    /// Whitespace, control or non-ASCII character.
    #[error("must be printable ASCII without spaces")]
    InvalidCharacter,
}

impl MessageId {
    /// Parses an id as Meta sends it.
    pub fn parse(input: &str) -> Result<Self, MessageIdError> {
        if input.is_empty() {
            return Err(MessageIdError::Empty);
        }
        if input.len() > MAX_LEN {
            return Err(MessageIdError::TooLong);
        }
        if !input.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(MessageIdError::InvalidCharacter);
        }
        Ok(Self(input.to_owned()))
    }

    /// The id as Meta sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wamid_is_accepted() {
        let id = MessageId::parse("wamid.HBgLOTE5MjE2NTk4MjEwFQIAEhgg=").unwrap();
        assert_eq!(id.as_str(), "wamid.HBgLOTE5MjE2NTk4MjEwFQIAEhgg=");
    }

    #[test]
    fn empty_spaces_and_overlong_ids_are_rejected() {
        assert_eq!(MessageId::parse(""), Err(MessageIdError::Empty));
        assert_eq!(
            MessageId::parse("wamid. x"),
            Err(MessageIdError::InvalidCharacter)
        );
        assert_eq!(
            MessageId::parse("wamid.\u{e9}"),
            Err(MessageIdError::InvalidCharacter)
        );
        assert_eq!(
            MessageId::parse(&"a".repeat(MAX_LEN + 1)),
            Err(MessageIdError::TooLong)
        );
        assert!(MessageId::parse(&"a".repeat(MAX_LEN)).is_ok());
    }
}
