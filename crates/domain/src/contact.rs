//! Residents' contact numbers as everyone but the callers-back see them: masked.
//!
//! [`mask`] is the one mask of a known contact (`138****8000`); [`mask_phone_runs`] finds phone
//! numbers in bytes that are not a report (a rejected payload that does not decode) and masks
//! them in place the same way.

/// Characters kept at the start of a masked contact.
const KEEP_FIRST: usize = 3;
/// Characters kept at the end of a masked contact.
const KEEP_LAST: usize = 4;

/// The contact with all but its first 3 and last 4 characters replaced by `*`
/// (`13812348000` → `138****8000`); a value too short to hide anything that way is all `*`.
/// Empty stays empty (no contact given).
pub fn mask(contact: &str) -> String {
    let chars: Vec<char> = contact.chars().collect();
    let n = chars.len();
    if n <= KEEP_FIRST + KEEP_LAST {
        return "*".repeat(n);
    }
    chars[..KEEP_FIRST]
        .iter()
        .copied()
        .chain(std::iter::repeat_n('*', n - KEEP_FIRST - KEEP_LAST))
        .chain(chars[n - KEEP_LAST..].iter().copied())
        .collect()
}

/// Masks, in place, the phone numbers written as ASCII digits in `bytes`, keeping the first 3
/// and last 4 digits of each as [`mask`] does:
///
/// - mainland mobile numbers, a run of exactly 11 digits `1[3-9]\d{9}`;
/// - landlines with their area code, `0` and 2–3 digits, then 7–8 digits, either as one run of
///   10–12 digits or separated by one `-` or space (`0477-8581234`).
///
/// A run is a maximal sequence of digits, so longer codes (15-digit grid codes, timestamps in
/// milliseconds) are left alone. Returns how many numbers were masked.
pub fn mask_phone_runs(bytes: &mut [u8]) -> usize {
    let runs = digit_runs(bytes);
    let mut masked = 0;
    let mut i = 0;
    while i < runs.len() {
        let (start, end) = runs[i];
        let len = end - start;
        let first = bytes[start];
        let mobile = len == 11 && first == b'1' && (b'3'..=b'9').contains(&bytes[start + 1]);
        let landline = (10..=12).contains(&len) && first == b'0';
        if mobile || landline {
            hide(&mut bytes[start..end]);
            masked += 1;
            i += 1;
            continue;
        }
        // An area code, one separator, then the local number.
        if first == b'0' && (3..=4).contains(&len) {
            if let Some(&(next_start, next_end)) = runs.get(i + 1) {
                let separated = next_start == end + 1 && matches!(bytes[end], b'-' | b' ');
                if separated && (7..=8).contains(&(next_end - next_start)) {
                    // Keep the area code's first 3 characters and the number's last 4.
                    let whole = &mut bytes[start..next_end];
                    let separator = end - start;
                    let n = whole.len();
                    for (k, b) in whole.iter_mut().enumerate() {
                        if k >= KEEP_FIRST && k < n - KEEP_LAST && k != separator {
                            *b = b'*';
                        }
                    }
                    masked += 1;
                    i += 2;
                    continue;
                }
            }
        }
        i += 1;
    }
    masked
}

/// Replaces all but the first 3 and last 4 bytes with `*`.
fn hide(digits: &mut [u8]) {
    let n = digits.len();
    for b in &mut digits[KEEP_FIRST..n - KEEP_LAST] {
        *b = b'*';
    }
}

/// The maximal runs of ASCII digits, as `(start, end)` byte ranges.
fn digit_runs(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, b) in bytes.iter().enumerate() {
        match (b.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, bytes.len()));
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_keeps_its_first_three_and_last_four_characters() {
        assert_eq!(mask("13812348000"), "138****8000");
        assert_eq!(mask("0477-8581234"), "047*****1234");
        assert_eq!(mask("12345678"), "123*5678");
        assert_eq!(mask("1234567"), "*******");
        assert_eq!(mask("110"), "***");
        assert_eq!(mask(""), "");
        assert_eq!(mask("电话一二三四五六七八"), "电话一***五六七八");
    }

    fn masked(text: &str) -> String {
        let mut bytes = text.as_bytes().to_vec();
        mask_phone_runs(&mut bytes);
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn mobile_numbers_and_landlines_are_masked_where_they_stand() {
        assert_eq!(
            masked("call 13812348000 or 0477-8581234 (04778581234)"),
            "call 138****8000 or 047*-***1234 (047****1234)"
        );
        assert_eq!(masked("tel:19900001111,"), "tel:199****1111,");
        assert_eq!(masked("0477 85812345"), "047* ****2345");
    }

    #[test]
    fn other_numbers_are_left_alone() {
        for text in [
            "grid 150602001001001",
            "12812348000",
            "138123480001",
            "1381234800",
            "at 1733040000000 ms",
            "2026-12-01T10:00:00Z",
            "room 8581234",
        ] {
            assert_eq!(masked(text), text);
        }
        let mut binary = vec![0x0a, 0x03, b'r', b'-', b'1', 0xff, 0x00];
        let before = binary.clone();
        assert_eq!(mask_phone_runs(&mut binary), 0);
        assert_eq!(binary, before);
    }
}
