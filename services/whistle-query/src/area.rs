//! Area scoping: every request names an org code, and "inside the area" is a prefix test on the
//! 15-digit grid code (see `whistle_domain::AreaCode`).

use whistle_domain::AreaCode;

use crate::{Error, Result};

/// Parses a request's area code; empty means "no area filter" (everything in the database).
pub(crate) fn parse_optional(field: &str, value: &str) -> Result<Option<AreaCode>> {
    if value.is_empty() {
        return Ok(None);
    }
    parse(field, value).map(Some)
}

/// Parses a required area code into INVALID_ARGUMENT with the field name and the reason.
pub(crate) fn parse(field: &str, value: &str) -> Result<AreaCode> {
    value
        .parse::<AreaCode>()
        .map_err(|e| Error::invalid(format!("{field}: {e}")))
}

/// The half-open range `[low, high)` of grid codes inside `area`, compared byte by byte.
///
/// Written as a range rather than `LIKE 'prefix%'` so that a bound parameter can use the
/// `text_pattern_ops` index on `incidents.grid_code` (the `~>=~` and `~<~` operators): the planner
/// only turns `LIKE` into a range for a literal pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GridRange {
    pub low: String,
    pub high: String,
}

impl GridRange {
    pub fn of(area: &AreaCode) -> GridRange {
        let prefix = area.prefix();
        let mut high = prefix.as_bytes().to_vec();
        // Codes are ASCII digits, so the last byte is below 0xFF and one past it bounds the prefix.
        if let Some(last) = high.last_mut() {
            *last += 1;
        }
        GridRange {
            low: prefix.to_owned(),
            high: String::from_utf8(high).expect("one past an ASCII digit is ASCII"),
        }
    }

    /// Whether a grid code falls in the range (the same test the SQL makes).
    #[cfg(test)]
    pub fn contains(&self, grid: &str) -> bool {
        grid >= self.low.as_str() && grid < self.high.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(code: &str) -> GridRange {
        GridRange::of(&code.parse().unwrap())
    }

    #[test]
    fn a_district_range_holds_exactly_its_grids() {
        let district = range("150602");
        assert_eq!(
            district,
            GridRange {
                low: "150602".into(),
                high: "150603".into()
            }
        );
        assert!(district.contains("150602001001001"));
        assert!(!district.contains("150603001001001"));
        assert!(!district.contains("150601999999999"));
    }

    #[test]
    fn the_city_contains_every_district_and_a_prefix_ending_in_nine_still_bounds() {
        let city = range("150600");
        assert!(city.contains("150602001001001"));
        assert!(city.contains("150627001001001"));
        assert!(!city.contains("150700001001001"));
        let street = range("150602009");
        assert_eq!(street.high, "15060200:");
        assert!(street.contains("150602009999999"));
        assert!(!street.contains("150602010001001"));
    }

    #[test]
    fn bad_codes_are_invalid_arguments_naming_the_field() {
        let error = parse("area_code", "15060").unwrap_err();
        let Error::InvalidArgument(message) = error else {
            panic!("{error:?}")
        };
        assert!(
            message.starts_with("area_code: invalid area code"),
            "{message}"
        );
        assert!(parse_optional("area_code", "").unwrap().is_none());
        assert!(parse_optional("area_code", "15060a").is_err());
    }
}
