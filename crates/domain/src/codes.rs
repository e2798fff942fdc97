//! Identifiers that cross crate boundaries, parsed once at the edge ("parse, don't validate").

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::Level;

/// An identifier that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {why}")]
pub struct InvalidCode {
    pub kind: &'static str,
    pub value: String,
    pub why: &'static str,
}

fn invalid(kind: &'static str, value: &str, why: &'static str) -> InvalidCode {
    let mut value = value.to_owned();
    if value.len() > 80 {
        let cut = (0..=80)
            .rev()
            .find(|&i| value.is_char_boundary(i))
            .unwrap_or(0);
        value.truncate(cut);
        value.push('…');
    }
    InvalidCode { kind, value, why }
}

/// A code of the administrative tree, by its number of digits: 6 for the city (ending in `00`) or a
/// banner/district, 9 for a street or township, 12 for a community, 15 for a grid. Each code starts
/// with its parent's code, so "inside an area" is a prefix test.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AreaCode(String);

impl AreaCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn level(&self) -> Level {
        match self.0.len() {
            6 if self.0.ends_with("00") => Level::City,
            6 => Level::District,
            9 => Level::Street,
            12 => Level::Community,
            _ => Level::Grid,
        }
    }

    /// The code of the enclosing unit, or `None` for the city.
    pub fn parent(&self) -> Option<AreaCode> {
        match self.level() {
            Level::City => None,
            Level::District => Some(AreaCode(format!("{}00", &self.0[..4]))),
            _ => Some(AreaCode(self.0[..self.0.len() - 3].to_owned())),
        }
    }

    /// The ancestor (or self) at `level`, if this code is at or below it.
    pub fn at_level(&self, level: Level) -> Option<AreaCode> {
        let len = match level {
            Level::City => return Some(AreaCode(format!("{}00", &self.0[..4]))),
            Level::District => 6,
            Level::Street => 9,
            Level::Community => 12,
            Level::Grid => 15,
        };
        if self.level() == Level::City || self.0.len() < len {
            return None;
        }
        Some(AreaCode(self.0[..len].to_owned()))
    }

    /// Whether `other` lies inside this area (or is this area).
    pub fn contains(&self, other: &AreaCode) -> bool {
        other.0.starts_with(self.prefix())
    }

    /// What every code inside this area starts with: the code itself, but for the city its first
    /// four digits (150600 holds 150602…, 150621…).
    pub fn prefix(&self) -> &str {
        match self.level() {
            Level::City => &self.0[..4],
            _ => &self.0,
        }
    }
}

impl FromStr for AreaCode {
    type Err = InvalidCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const KIND: &str = "area code";
        if !matches!(s.len(), 6 | 9 | 12 | 15) {
            return Err(invalid(KIND, s, "expected 6, 9, 12 or 15 digits"));
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(KIND, s, "expected digits only"));
        }
        if s.len() > 6 && s[s.len() - 3..] == *"000" {
            return Err(invalid(
                KIND,
                s,
                "the last three digits of a sub-unit cannot be 000",
            ));
        }
        Ok(AreaCode(s.to_owned()))
    }
}

impl TryFrom<String> for AreaCode {
    type Error = InvalidCode;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<AreaCode> for String {
    fn from(c: AreaCode) -> String {
        c.0
    }
}

impl fmt::Display for AreaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Defines a string newtype restricted to `[A-Za-z0-9._:-]` (safe in NATS subjects when `.` is
/// excluded, and in `Nats-Msg-Id` headers) with a length bound.
macro_rules! token_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, max = $max:literal, dots = $dots:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidCode;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.is_empty() {
                    return Err(invalid($kind, s, "must not be empty"));
                }
                if s.len() > $max {
                    return Err(invalid($kind, s, concat!("longer than ", $max, " characters")));
                }
                let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':') || ($dots && b == b'.');
                if !s.bytes().all(allowed) {
                    return Err(invalid($kind, s, if $dots { "allowed characters are A-Z a-z 0-9 . _ : -" } else { "allowed characters are A-Z a-z 0-9 _ : -" }));
                }
                Ok($name(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidCode;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(c: $name) -> String {
                c.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

token_id!(
    /// The client's own unique id of a report, also its `Nats-Msg-Id`.
    ReportId, "report id", max = 64, dots = true
);
token_id!(
    /// A person: grid worker, liaison or operator (e.g. `gw-150602001001001`).
    PersonId, "person id", max = 64, dots = true
);
token_id!(
    /// A functional department, `{area}-{kind}` (e.g. `150602-urban_management`); a NATS subject
    /// token, so no dots.
    DepartmentCode, "department code", max = 64, dots = false
);
token_id!(
    /// A dispatch category, `{group}.{item}` (e.g. `heating.no_heat`).
    CategoryCode, "category code", max = 64, dots = true
);

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> AreaCode {
        s.parse().unwrap()
    }

    #[test]
    fn area_code_levels_and_parents() {
        assert_eq!(code("150600").level(), Level::City);
        assert_eq!(code("150602").level(), Level::District);
        assert_eq!(code("150602001").level(), Level::Street);
        assert_eq!(code("150602001002").level(), Level::Community);
        let grid = code("150602001002003");
        assert_eq!(grid.level(), Level::Grid);
        assert_eq!(grid.parent(), Some(code("150602001002")));
        assert_eq!(code("150602").parent(), Some(code("150600")));
        assert_eq!(code("150600").parent(), None);
        assert_eq!(grid.at_level(Level::Street), Some(code("150602001")));
        assert_eq!(grid.at_level(Level::City), Some(code("150600")));
        assert_eq!(code("150602").at_level(Level::Street), None);
    }

    #[test]
    fn containment_is_by_prefix_and_city_contains_its_districts() {
        let grid = code("150627101002003");
        assert!(code("150600").contains(&grid));
        assert!(code("150627").contains(&grid));
        assert!(code("150627101").contains(&grid));
        assert!(!code("150602").contains(&grid));
        assert!(!code("150627102").contains(&grid));
    }

    #[test]
    fn malformed_area_codes_are_refused_with_a_reason() {
        for bad in [
            "",
            "15060",
            "1506020",
            "15060200100a",
            "150602000",
            "１５０６００",
        ] {
            let err = bad.parse::<AreaCode>().unwrap_err();
            assert_eq!(err.kind, "area code", "{bad}");
        }
    }

    #[test]
    fn token_ids_reject_subject_breaking_characters() {
        assert!("r-2026.11.30:0001".parse::<ReportId>().is_ok());
        assert!("a b".parse::<ReportId>().is_err());
        assert!("a*".parse::<ReportId>().is_err());
        assert!("a>".parse::<ReportId>().is_err());
        assert!("".parse::<ReportId>().is_err());
        assert!("x".repeat(65).parse::<ReportId>().is_err());
        assert!("150602-urban_management".parse::<DepartmentCode>().is_ok());
        assert!("150602.urban".parse::<DepartmentCode>().is_err());
    }
}
