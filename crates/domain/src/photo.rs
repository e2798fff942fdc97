//! Photos of incidents: a report's (the problem, before) and a resolution's (the work, after).
//!
//! A photo is named by the SHA-256 of its bytes ([`PhotoId`]), so uploading the same image twice
//! stores it once and a retried upload answers the same id. What a photo may be is decided here
//! from its bytes alone ([`MediaType::sniff`]): a client's declared type is never trusted.

use std::{fmt, str::FromStr};

/// Most photos on one report or one resolution.
pub const MAX_PHOTOS: usize = 9;

/// Largest photo accepted: the console compresses on the device (longest side 1,600 px, JPEG) to
/// well under this; a raw camera file is refused.
pub const MAX_PHOTO_BYTES: usize = 2 * 1024 * 1024;

/// A photo's id: the lowercase hex SHA-256 of its bytes (64 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhotoId(String);

impl PhotoId {
    /// The id of `digest`, a SHA-256.
    pub fn from_digest(digest: &[u8; 32]) -> PhotoId {
        PhotoId(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhotoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a string is not a [`PhotoId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("photo id {0:?} is not a SHA-256 in lowercase hex (64 characters of 0-9a-f)")]
pub struct InvalidPhotoId(pub String);

impl FromStr for PhotoId {
    type Err = InvalidPhotoId;

    fn from_str(s: &str) -> Result<PhotoId, InvalidPhotoId> {
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if s.len() == 64 && s.bytes().all(hex) {
            Ok(PhotoId(s.to_owned()))
        } else {
            Err(InvalidPhotoId(s.chars().take(80).collect()))
        }
    }
}

/// The image formats a phone's browser produces and every screen shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    Jpeg,
    Png,
    Webp,
}

impl MediaType {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Jpeg => "image/jpeg",
            MediaType::Png => "image/png",
            MediaType::Webp => "image/webp",
        }
    }

    pub fn parse(s: &str) -> Option<MediaType> {
        [MediaType::Jpeg, MediaType::Png, MediaType::Webp]
            .into_iter()
            .find(|t| t.as_str() == s)
    }

    /// The format the bytes' signature ("magic bytes") says, or `None` for anything else — an
    /// HTML page or a script named `.jpg` included.
    pub fn sniff(bytes: &[u8]) -> Option<MediaType> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(MediaType::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(MediaType::Png)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(MediaType::Webp)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lowercase_hex_sha256() {
        let id = PhotoId::from_digest(&[0xab; 32]);
        assert_eq!(id.as_str(), "ab".repeat(32));
        assert_eq!(id.as_str().parse::<PhotoId>().unwrap(), id);
        for bad in [
            "",
            "AB".repeat(32).as_str(),
            "ab".repeat(31).as_str(),
            "ab".repeat(33).as_str(),
            &format!("{}zz", "ab".repeat(31)),
            "../../etc/passwd",
        ] {
            assert!(bad.parse::<PhotoId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_type_comes_from_the_bytes() {
        assert_eq!(
            MediaType::sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]),
            Some(MediaType::Jpeg)
        );
        assert_eq!(
            MediaType::sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(MediaType::Png)
        );
        assert_eq!(
            MediaType::sniff(b"RIFF\x24\0\0\0WEBPVP8 "),
            Some(MediaType::Webp)
        );
        for bad in [
            &b"<html><script>alert(1)</script>"[..],
            b"GIF89a",
            b"RIFF\x24\0\0\0WAVE",
            b"",
            &[0xFF, 0xD8],
        ] {
            assert_eq!(MediaType::sniff(bad), None, "{bad:?}");
        }
        assert_eq!(MediaType::parse("image/png"), Some(MediaType::Png));
        assert_eq!(MediaType::parse("text/html"), None);
    }
}
