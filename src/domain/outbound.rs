//! Outbound messages a client asks us to send. Today: plain text; more kinds join as variants here
//! and as request builders in [`crate::graph`].

use crate::domain::PhoneNumber;

/// Meta's limit for `text.body`, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

/// The body of a text message: 1 to 4096 characters, not only whitespace.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageText(String);

/// Why a string cannot be sent as a text message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageTextError {
    /// Empty or only whitespace: Meta rejects it with error 100.
    #[error("must have 1-{MAX_TEXT_CHARS} characters and not be only whitespace")]
    Blank,
    /// More than [`MAX_TEXT_CHARS`] characters.
    #[error("must have 1-{MAX_TEXT_CHARS} characters (found {0})")]
    TooLong(usize),
}

impl MessageText {
    /// Parses a message body; length is counted in characters, as Meta counts it.
    pub fn parse(input: String) -> Result<Self, MessageTextError> {
        if input.trim().is_empty() {
            return Err(MessageTextError::Blank);
        }
        let chars = input.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(MessageTextError::TooLong(chars));
        }
        Ok(Self(input))
    }

    /// The text as the client wrote it (not trimmed: whitespace can be deliberate formatting).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for MessageText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Message content is personal data; Debug shows only its size.
        write!(f, "MessageText({} chars)", self.0.chars().count())
    }
}

/// A text message ready to send.
#[derive(Debug, Clone)]
pub struct OutboundText {
    /// Recipient.
    pub to: PhoneNumber,
    /// Body.
    pub text: MessageText,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_and_4096_characters_are_accepted() {
        assert!(MessageText::parse("a".into()).is_ok());
        // Multi-byte characters count once each.
        assert!(MessageText::parse("é".repeat(MAX_TEXT_CHARS)).is_ok());
    }

    #[test]
    fn empty_blank_and_4097_characters_are_rejected() {
        assert_eq!(
            MessageText::parse(String::new()),
            Err(MessageTextError::Blank)
        );
        assert_eq!(
            MessageText::parse(" \n\t".into()),
            Err(MessageTextError::Blank)
        );
        assert_eq!(
            MessageText::parse("a".repeat(MAX_TEXT_CHARS + 1)),
            Err(MessageTextError::TooLong(MAX_TEXT_CHARS + 1))
        );
    }

    #[test]
    fn debug_does_not_show_the_text() {
        let t = MessageText::parse("secret plans".into()).unwrap();
        assert_eq!(format!("{t:?}"), "MessageText(12 chars)");
    }
}
