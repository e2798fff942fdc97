//! Residents' personal data taken out of what the Open311 door shows: phone numbers and
//! identity card numbers in descriptions, masked as everywhere else (`138****8000`).
//! The door shows no names, e-mail addresses or contacts at all; a name written into the
//! free text cannot be recognised and is the one thing this does not catch (docs/open311.md).

use whistle_domain::contact::mask_phone_runs;

/// `text` with its phone numbers (mobile and landline, as `mask_phone_runs` finds them) and its
/// resident identity card numbers (18 characters, the last a digit or `X`, or the old 15 digits)
/// masked, keeping the first 3 and last 4 characters of each.
pub(crate) fn redact(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    mask_phone_runs(&mut bytes);
    mask_id_numbers(&mut bytes);
    // Only ASCII digits and letters became `*`, so the bytes are still UTF-8.
    String::from_utf8(bytes).expect("masking keeps UTF-8")
}

fn mask_id_numbers(bytes: &mut [u8]) {
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let mut end = i;
        // The check character of an 18-character number may be X.
        if end - start == 17 && end < bytes.len() && matches!(bytes[end], b'X' | b'x') {
            end += 1;
            i = end;
        }
        let len = end - start;
        let alone = end == bytes.len() || !bytes[end].is_ascii_alphanumeric();
        if (len == 18 || len == 15) && alone {
            for b in &mut bytes[start + 3..end - 4] {
                *b = b'*';
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_and_identity_numbers_are_masked_and_the_rest_kept() {
        assert_eq!(
            redact("王女士电话13812348000，身份证150602199001011234，座机0477-8581234。"),
            "王女士电话138****8000，身份证150***********1234，座机047*-***1234。"
        );
        assert_eq!(redact("证件 15060219900101123X"), "证件 150***********123X");
        assert_eq!(redact("旧证 150602900101123"), "旧证 150********1123");
        assert_eq!(redact("3号楼2单元暖气不热"), "3号楼2单元暖气不热");
        // Longer runs are not identity numbers (a 20-digit meter number stays).
        assert_eq!(
            redact("表号 12345678901234567890"),
            "表号 12345678901234567890"
        );
    }
}
