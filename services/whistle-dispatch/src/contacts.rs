//! Residents' contacts on their way in: taken out of every valid report before anything is
//! stored or published, sealed for `report_contacts` (or dropped), and masked in what is kept of
//! a rejected report.

use prost::Message as _;
use sha2::{Digest as _, Sha256};
use whistle_domain::contact;
use whistle_proto::v1;
use whistle_store::{
    contacts::{Keyring, SealedContact},
    tracking::{self, SealedCode},
};

use crate::{validate::Reason, Error, Options};

/// What a too-large rejected report keeps of its payload (masked).
pub const KEPT_OF_TOO_LARGE: usize = 1024;

/// What intake does with a report's contact.
#[derive(Debug)]
pub(crate) enum Contacts {
    /// Sealed under the keyring's first key and stored apart.
    Sealed(Keyring),
    /// Dropped (`--no-contacts`): the report is recorded without it.
    Dropped,
}

impl Contacts {
    /// The keyring of `contact_keys`, or dropping when `no_contacts` says so; neither is an error,
    /// so that contacts are never kept in clear by omission.
    pub fn from_options(options: &Options) -> Result<Contacts, Error> {
        match (&options.contact_keys, options.no_contacts) {
            (Some(path), _) => Ok(Contacts::Sealed(Keyring::load(path)?)),
            (None, true) => {
                tracing::warn!(
                    "no contact keyring (--no-contacts): residents' contacts are dropped"
                );
                Ok(Contacts::Dropped)
            }
            (None, false) => Err(Error::NoContactKeys),
        }
    }

    /// Takes the contact out of `report` (which is then stored and published without it) and
    /// seals it, or drops it.
    pub fn take(&self, report_id: &str, report: &mut v1::Report) -> Option<SealedContact> {
        let contact = std::mem::take(&mut report.contact_phone);
        match self {
            Contacts::Sealed(keyring) if !contact.is_empty() => {
                Some(keyring.seal(report_id, &contact))
            }
            _ => None,
        }
    }

    /// A new tracking code for the resident of `report_id`, sealed (`whistle_store::tracking`);
    /// none without a keyring, which is also what the public page looks codes up with.
    pub fn tracking_code(&self, report_id: &str) -> Option<SealedCode> {
        match self {
            Contacts::Sealed(keyring) => {
                Some(tracking::seal(keyring, report_id, &tracking::generate()))
            }
            Contacts::Dropped => None,
        }
    }
}

/// What a rejection keeps of a payload: a report that decodes (protobuf, or proto3 JSON when
/// `json`) is kept with its contact masked; anything else with the phone numbers in its ASCII
/// digits masked; a too-large one only its first [`KEPT_OF_TOO_LARGE`] bytes, masked.
pub(crate) fn kept_payload(payload: &[u8], json: bool, reason: Reason) -> Vec<u8> {
    if reason == Reason::TooLarge {
        let mut masked = payload.to_vec();
        contact::mask_phone_runs(&mut masked);
        masked.truncate(KEPT_OF_TOO_LARGE);
        return masked;
    }
    let decoded = if json || payload.first() == Some(&b'{') {
        whistle_proto::from_json::<v1::Report>(payload)
            .ok()
            .map(|report| (report, true))
    } else {
        v1::Report::decode(payload)
            .ok()
            .map(|report| (report, false))
    };
    match decoded {
        Some((report, _)) if report.contact_phone.is_empty() => payload.to_vec(),
        Some((mut report, as_json)) => {
            report.contact_phone = contact::mask(&report.contact_phone);
            if as_json {
                whistle_proto::to_json(&report)
                    .map(String::into_bytes)
                    .unwrap_or_else(|_| masked_digits(payload))
            } else {
                report.encode_to_vec()
            }
        }
        None => masked_digits(payload),
    }
}

fn masked_digits(payload: &[u8]) -> Vec<u8> {
    let mut masked = payload.to_vec();
    contact::mask_phone_runs(&mut masked);
    masked
}

/// The size and SHA-256 (hex) of a payload, told about a too-large one that is not kept whole.
pub(crate) fn fingerprint(payload: &[u8]) -> (usize, String) {
    let digest = Sha256::digest(payload);
    let hex = digest.iter().map(|b| format!("{b:02x}")).collect();
    (payload.len(), hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(contact: &str) -> v1::Report {
        v1::Report {
            report_id: "r-1".into(),
            title: "没有暖气".into(),
            contact_phone: contact.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_kept_report_has_its_contact_masked_in_its_own_encoding() {
        let kept = kept_payload(
            &report("13812348000").encode_to_vec(),
            false,
            Reason::MissingField,
        );
        let back = v1::Report::decode(kept.as_slice()).unwrap();
        assert_eq!(back.contact_phone, "138****8000");
        assert_eq!(back.title, "没有暖气");

        let json = whistle_proto::to_json(&report("13812348000")).unwrap();
        let kept = kept_payload(json.as_bytes(), true, Reason::MissingField);
        let back: v1::Report = whistle_proto::from_json(&kept).unwrap();
        assert_eq!(back.contact_phone, "138****8000");

        let without = report("").encode_to_vec();
        assert_eq!(kept_payload(&without, false, Reason::MissingField), without);
    }

    #[test]
    fn a_payload_that_is_not_a_report_has_its_phone_numbers_masked() {
        let garbage = b"{\"contactPhone\": \"13812348000\", \"broken".to_vec();
        let kept = kept_payload(&garbage, true, Reason::DecodeError);
        assert_eq!(
            kept,
            b"{\"contactPhone\": \"138****8000\", \"broken".to_vec()
        );
    }

    #[test]
    fn a_too_large_payload_keeps_its_first_kib_masked() {
        let mut payload = b"tel 13812348000 ".to_vec();
        payload.resize(5000, b'x');
        let kept = kept_payload(&payload, false, Reason::TooLarge);
        assert_eq!(kept.len(), KEPT_OF_TOO_LARGE);
        assert!(kept.starts_with(b"tel 138****8000 "));
        let (size, sha) = fingerprint(&payload);
        assert_eq!(size, 5000);
        assert_eq!(sha.len(), 64);
    }

    #[test]
    fn contacts_are_taken_out_of_the_report() {
        let keyring = Keyring::parse(&Keyring::generate_line("k1")).unwrap();
        let mut with = report("13812348000");
        let sealed = Contacts::Sealed(keyring.clone())
            .take("r-1", &mut with)
            .expect("sealed");
        assert_eq!(with.contact_phone, "");
        assert_eq!(
            keyring
                .open("r-1", &sealed.key_id, &sealed.nonce, &sealed.ciphertext)
                .unwrap(),
            "13812348000"
        );
        let mut dropped = report("13812348000");
        assert_eq!(Contacts::Dropped.take("r-1", &mut dropped), None);
        assert_eq!(dropped.contact_phone, "");
        let mut none = report("");
        assert_eq!(Contacts::Sealed(keyring).take("r-1", &mut none), None);
    }
}
