//! Phone numbers as the APIs accept them: `^\+?[1-9][0-9]{6,14}$` (E.164: country codes
//! never start with 0), kept as E.164 digits.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A phone number in international format, valid by construction: 7 to 15 digits,
/// country code first. Displays as `+<digits>` (E.164).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

/// Why a string is not a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be a phone number in international format matching ^\\+?[1-9][0-9]{{6,14}}$ (country code first, no leading 0)"
)]
pub struct InvalidPhone;

impl Phone {
    /// Parses exactly the documented pattern `^\+?[1-9][0-9]{6,14}$`; nothing is stripped or
    /// guessed, because a silently "fixed" number sends to the wrong person.
    pub fn parse(s: &str) -> Result<Self, InvalidPhone> {
        let digits = s.strip_prefix('+').unwrap_or(s);
        // E.164: no country code starts with 0 (a leading 0 is a national trunk prefix,
        // and WhatsApp would address someone else or no one).
        if (7..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
        {
            Ok(Self(digits.to_owned()))
        } else {
            Err(InvalidPhone)
        }
    }

    /// The digits without `+`, as WhatsApp JIDs use them.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// `+<digits>`.
    pub fn e164(&self) -> String {
        format!("+{}", self.0)
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

impl TryFrom<String> for Phone {
    type Error = InvalidPhone;
    fn try_from(s: String) -> Result<Self, InvalidPhone> {
        Self::parse(&s)
    }
}

impl From<Phone> for String {
    fn from(p: Phone) -> String {
        p.e164()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_documented_pattern() {
        assert_eq!(
            Phone::parse("+201001234567").map(|p| p.e164()),
            Ok("+201001234567".into())
        );
        assert_eq!(
            Phone::parse("201001234567").map(|p| p.digits().to_owned()),
            Ok("201001234567".into())
        );
        assert!(Phone::parse("1234567").is_ok());
        assert!(Phone::parse("123456789012345").is_ok());
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "+",
            "123456",
            "1234567890123456",
            "+20 100",
            "++2010012345",
            "20100abc45",
            "٢٠١٠٠١٢٣٤٥٦",
            "+0201001234567",
            "0201001234567",
        ] {
            assert_eq!(Phone::parse(bad), Err(InvalidPhone), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn parse_agrees_with_the_regex(s in "\\PC{0,20}") {
            let plus = s.strip_prefix('+').unwrap_or(&s);
            let expected = (7..=15).contains(&plus.len())
                && plus.bytes().all(|b| b.is_ascii_digit())
                && !plus.starts_with('0');
            prop_assert_eq!(Phone::parse(&s).is_ok(), expected);
        }

        #[test]
        fn valid_numbers_round_trip(d in "[1-9][0-9]{6,14}", plus in any::<bool>()) {
            let input = if plus { format!("+{d}") } else { d.clone() };
            let p = Phone::parse(&input).unwrap();
            prop_assert_eq!(p.digits(), d.as_str());
            prop_assert_eq!(Phone::parse(&p.e164()).unwrap(), p);
        }
    }
}
