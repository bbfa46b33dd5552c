//! [`PhoneNumber`]: a WhatsApp user id (`wa_id`) as digits only.
//!
//! Clients may write `+91 92165-98210`, `(919) 216.598.210` or `919216598210`; all normalize to the
//! same digits, which are the Redis key suffix and Meta's `to`. We strip only separators and never
//! add or remove digits: Meta's wa_id can differ from the dialable number (Mexico `521…`, Argentina
//! `549…`), so rewriting digits would split one conversation into two.

use std::fmt;

/// Shortest and longest number of digits accepted (E.164 allows at most 15; the shortest real
/// subscriber numbers with country code have 7).
pub const MIN_DIGITS: usize = 7;
/// See [`MIN_DIGITS`].
pub const MAX_DIGITS: usize = 15;

/// A normalized phone number: 7 to 15 ASCII digits, no `+` or separators.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

/// Why a string is not a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneNumberError {
    /// A character other than a digit or an accepted separator.
    #[error(
        "must contain only digits, optionally with a leading '+', spaces, dashes, dots or parentheses (found {0:?})"
    )]
    InvalidCharacter(char),
    /// Too few or too many digits.
    #[error("must have {MIN_DIGITS}-{MAX_DIGITS} digits (found {0})")]
    WrongLength(usize),
}

impl PhoneNumber {
    /// Parses a number as a person would type it. A `+` is accepted only before the first digit.
    pub fn parse(input: &str) -> Result<Self, PhoneNumberError> {
        let mut digits = String::with_capacity(input.len());
        for c in input.trim().chars() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if digits.is_empty() => {}
                ' ' | '-' | '.' | '(' | ')' => {}
                other => return Err(PhoneNumberError::InvalidCharacter(other)),
            }
        }
        if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()) {
            return Err(PhoneNumberError::WrongLength(digits.len()));
        }
        Ok(Self(digits))
    }

    /// The digits, e.g. `919216598210`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last four digits, for logs: full numbers are personal data.
    pub fn masked(&self) -> String {
        format!("***{}", &self.0[self.0.len() - 4..])
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl AsRef<str> for PhoneNumber {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plus_spaces_and_dashes_are_stripped() {
        let n = PhoneNumber::parse("+91 92165-98210").unwrap();
        assert_eq!(n.as_str(), "919216598210");
    }

    #[test]
    fn parentheses_and_dots_are_stripped() {
        let n = PhoneNumber::parse("(1) 555.013.4567").unwrap();
        assert_eq!(n.as_str(), "15550134567");
    }

    #[test]
    fn letters_are_rejected() {
        assert_eq!(
            PhoneNumber::parse("91921659821O"),
            Err(PhoneNumberError::InvalidCharacter('O'))
        );
    }

    #[test]
    fn plus_after_digits_is_rejected() {
        assert_eq!(
            PhoneNumber::parse("9192+16598210"),
            Err(PhoneNumberError::InvalidCharacter('+'))
        );
    }

    #[test]
    fn six_and_sixteen_digits_are_rejected() {
        assert_eq!(
            PhoneNumber::parse("123456"),
            Err(PhoneNumberError::WrongLength(6))
        );
        assert_eq!(
            PhoneNumber::parse("1234567890123456"),
            Err(PhoneNumberError::WrongLength(16))
        );
        assert_eq!(
            PhoneNumber::parse(""),
            Err(PhoneNumberError::WrongLength(0))
        );
    }

    #[test]
    fn debug_masks_all_but_last_four_digits() {
        let n = PhoneNumber::parse("919216598210").unwrap();
        assert_eq!(format!("{n:?}"), "PhoneNumber(***8210)");
    }

    proptest! {
        /// Any formatting of a valid digit string normalizes back to exactly those digits.
        #[test]
        fn formatting_never_changes_the_digits(
            digits in "[0-9]{7,15}",
            plus in any::<bool>(),
            seps in proptest::collection::vec(prop_oneof![Just(""), Just(" "), Just("-"), Just("."), Just("("), Just(")")], 15),
        ) {
            let mut typed = String::from(if plus { "+" } else { "" });
            for (i, d) in digits.chars().enumerate() {
                typed.push(d);
                typed.push_str(seps[i]);
            }
            let parsed = PhoneNumber::parse(&typed).unwrap();
            prop_assert_eq!(parsed.as_str(), digits.as_str());
            // Normalizing is idempotent.
            prop_assert_eq!(PhoneNumber::parse(parsed.as_str()).unwrap(), parsed);
        }

        /// Parsing never panics and only ever yields 7-15 digits.
        #[test]
        fn parse_only_yields_valid_numbers(input in "\\PC{0,40}") {
            if let Ok(n) = PhoneNumber::parse(&input) {
                prop_assert!(n.as_str().bytes().all(|b| b.is_ascii_digit()));
                prop_assert!((MIN_DIGITS..=MAX_DIGITS).contains(&n.as_str().len()));
            }
        }
    }
}
