//! Residents' personal data taken out of what the Open311 door shows: phone numbers and
//! identity card numbers in descriptions, masked as everywhere else (`138****8000`), and names
//! where the text marks them as names. The door shows no names, e-mail addresses or contacts of
//! its own; a name written into the free text with no such mark is not recognised
//! (docs/open311.md).

use whistle_domain::contact::mask_phone_runs;

/// `text` with its phone numbers (mobile and landline, as `mask_phone_runs` finds them) and its
/// resident identity card numbers (18 characters, the last a digit or `X`, or the old 15 digits)
/// masked, keeping the first 3 and last 4 characters of each.
pub(crate) fn redact(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    mask_phone_runs(&mut bytes);
    mask_id_numbers(&mut bytes);
    // Only ASCII digits and letters became `*`, so the bytes are still UTF-8.
    mask_names(&String::from_utf8(bytes).expect("masking keeps UTF-8"))
}

/// Words after which, with a colon, a name is written (姓名：王建国).
const NAME_LABELS: [&str; 9] = [
    "姓名",
    "联系人",
    "报告人",
    "反映人",
    "来电人",
    "户主",
    "业主",
    "当事人",
    "申请人",
];
/// Who a sentence of a work order is about (居民王建国反映…)…
const PEOPLE: [&str; 7] = ["居民", "市民", "业主", "住户", "租户", "村民", "群众"];
/// …and what they did, after their name.
const SAID: [&str; 7] = ["反映", "来电", "投诉", "称", "表示", "诉求", "报称"];
/// The longest run of Han characters taken for a name (Mongolian names written in Han
/// characters run to four or more, 乌云其其格; longer runs are kept whole).
const NAME_CHARS: std::ops::RangeInclusive<usize> = 2..=5;

/// `text` with the names it marks as names masked but for their first character (王**):
/// a run of Han characters after a label and a colon, or between a word for a resident and a
/// verb of reporting. Errs on the side of masking: a run there that is not a name is masked too.
fn mask_names(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut masked = chars.clone();
    let han = |c: char| ('\u{4e00}'..='\u{9fff}').contains(&c);
    let starts = |at: usize, word: &str| {
        word.chars()
            .enumerate()
            .all(|(k, c)| chars.get(at + k) == Some(&c))
    };
    let mut mask = |from: usize, to: usize| {
        for c in &mut masked[from + 1..to] {
            *c = '*';
        }
    };
    for at in 0..chars.len() {
        // 姓名：王建国 — the run after the colon, up to the longest a name runs.
        for label in NAME_LABELS {
            let colon = at + label.chars().count();
            if starts(at, label) && matches!(chars.get(colon), Some(':' | '：')) {
                let from = (colon + 1..chars.len())
                    .find(|&i| !chars[i].is_whitespace())
                    .unwrap_or(chars.len());
                let to = (from..chars.len())
                    .take_while(|&i| han(chars[i]))
                    .last()
                    .map_or(from, |i| i + 1);
                if NAME_CHARS.contains(&(to - from)) {
                    mask(from, to);
                }
            }
        }
        // 居民王建国反映 — the run between the resident and the verb.
        for person in PEOPLE {
            let from = at + person.chars().count();
            if !starts(at, person) {
                continue;
            }
            for len in NAME_CHARS {
                let to = from + len;
                if to <= chars.len()
                    && chars[from..to].iter().all(|&c| han(c))
                    && SAID.iter().any(|said| starts(to, said))
                {
                    mask(from, to);
                    break;
                }
            }
        }
    }
    masked.into_iter().collect()
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

    #[test]
    fn names_the_text_marks_as_names_are_masked() {
        for (text, shown) in [
            ("姓名：王建国，3号楼2单元", "姓名：王**，3号楼2单元"),
            ("联系人: 乌云其其格 电话略", "联系人: 乌**** 电话略"),
            ("居民李秀英反映楼道灯不亮", "居民李**反映楼道灯不亮"),
            ("市民巴特尔来电称暖气不热", "市民巴**来电称暖气不热"),
            ("业主：张伟", "业主：张*"),
            // Nothing marked as a name: kept whole.
            ("居民反映暖气不热", "居民反映暖气不热"),
            ("业主反映物业不作为", "业主反映物业不作为"),
            ("王女士称家中漏水", "王女士称家中漏水"),
            ("3号楼2单元暖气不热", "3号楼2单元暖气不热"),
            // Errs on masking: a run between a resident and a verb of reporting that is not a name.
            ("群众多次投诉噪音", "群众多*投诉噪音"),
        ] {
            assert_eq!(redact(text), shown, "{text}");
        }
    }
}
