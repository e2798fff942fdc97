//! The areas the counters are kept for: a grid and every unit containing it.

use whistle_domain::{AreaCode, Level};

/// An area as the counters key it: the digits of a code prefix and how many there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct AreaKey(u64);

/// The prefix lengths of the areas containing a grid: everything, the city (its first four
/// digits, as in `area.rs`), the district, street, community and the grid itself.
const PREFIXES: [u32; 6] = [0, 4, 6, 9, 12, 15];

impl AreaKey {
    fn new(digits: u64, len: u32) -> AreaKey {
        AreaKey((digits << 4) | u64::from(len))
    }

    /// The key of a request's area; `None` is everything.
    pub(crate) fn of(area: Option<&AreaCode>) -> AreaKey {
        let Some(area) = area else {
            return AreaKey(0);
        };
        let code = area.as_str();
        let prefix = if area.level() == Level::City {
            &code[..4]
        } else {
            code
        };
        let digits = prefix.parse().expect("area codes are at most 15 digits");
        AreaKey::new(digits, prefix.len() as u32)
    }
}

/// A 15-digit grid code as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Grid(u64);

impl Grid {
    pub(crate) fn parse(code: &str) -> Option<Grid> {
        (code.len() == 15 && code.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Grid(code.parse().expect("15 digits fit in a u64")))
    }

    /// The street containing it, as a 9-digit number.
    pub(super) fn street(self) -> u64 {
        self.0 / 1_000_000
    }

    /// The district containing it, as a 6-digit number.
    pub(super) fn district(self) -> u64 {
        self.0 / 1_000_000_000
    }

    /// Its first `len` digits (at most 15).
    pub(super) fn prefix(self, len: u32) -> u64 {
        self.0 / 10u64.pow(15 - len)
    }

    pub(super) fn areas(self) -> [AreaKey; 6] {
        PREFIXES.map(|len| AreaKey::new(self.0 / 10u64.pow(15 - len), len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregates::fixtures::{grid, key};

    #[test]
    fn a_grid_is_in_everything_its_city_district_street_community_and_itself() {
        let areas = grid(0).areas();
        for code in [
            "",
            "150600",
            "150602",
            "150602001",
            "150602001001",
            "150602001001001",
        ] {
            assert!(areas.contains(&key(code)), "{code}");
        }
        for code in ["150603", "150602002", "150602001001002", "150700"] {
            assert!(!areas.contains(&key(code)), "{code}");
        }
        assert!(Grid::parse("15060200100100").is_none());
        assert!(Grid::parse("15060200100100x").is_none());
    }
}
