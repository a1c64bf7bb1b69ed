//! MD5 digests of chunks: parsing `Content-MD5` (RFC 1864) and hashing while streaming.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// A 16-byte MD5 digest. Shown as base64 (the `Content-MD5` form); `hex()` gives the
/// form S3 uses in ETags.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Md5Digest([u8; 16]);

impl Md5Digest {
    /// The digest of `data`, hashed in one go.
    pub fn of(data: &[u8]) -> Self {
        Self(Md5::digest(data).into())
    }

    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Lower-case hex, as in an S3 ETag.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The digest `hex()` wrote (either case); `None` for anything else.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 32 {
            return None;
        }
        let digit = |c: u8| char::from(c).to_digit(16);
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
        }
        Some(Self(bytes))
    }
}

impl From<[u8; 16]> for Md5Digest {
    fn from(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

/// The text was not base64 of 16 bytes.
#[derive(Debug, thiserror::Error)]
#[error("not the base64 of a 16-byte MD5 digest")]
pub struct InvalidMd5;

impl FromStr for Md5Digest {
    type Err = InvalidMd5;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = STANDARD.decode(s.trim()).map_err(|_| InvalidMd5)?;
        let bytes: [u8; 16] = bytes.try_into().map_err(|_| InvalidMd5)?;
        Ok(Self(bytes))
    }
}

impl TryFrom<String> for Md5Digest {
    type Error = InvalidMd5;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Md5Digest> for String {
    fn from(d: Md5Digest) -> Self {
        d.to_string()
    }
}

impl fmt::Display for Md5Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for Md5Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Md5Digest({self})")
    }
}

/// Hashes bytes as they stream past and counts them.
#[derive(Default, Clone)]
pub struct Md5Hasher {
    inner: Md5,
    len: u64,
}

impl Md5Hasher {
    /// A hasher that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.inner.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes seen so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no byte has been seen.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything seen.
    pub fn finish(self) -> Md5Digest {
        Md5Digest(self.inner.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors_match_rfc_1321() {
        assert_eq!(Md5Digest::of(b"").hex(), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(Md5Digest::of(b"abc").hex(), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(Md5Digest::of(b"").to_string(), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }

    #[test]
    fn streaming_in_pieces_gives_the_one_shot_digest() {
        let mut hasher = Md5Hasher::new();
        hasher.update(b"hello ");
        hasher.update(b"world");
        assert_eq!(hasher.len(), 11);
        assert_eq!(hasher.finish(), Md5Digest::of(b"hello world"));
    }

    #[test]
    fn hex_reads_back() {
        let md5 = Md5Digest::of(b"abc");
        assert_eq!(Md5Digest::from_hex(&md5.hex()), Some(md5));
        assert_eq!(Md5Digest::from_hex(&md5.hex().to_uppercase()), Some(md5));
        for bad in [
            "",
            "d41d8cd98f00b204e9800998ecf8427",
            "+41d8cd98f00b204e9800998ecf8427e",
            "zz1d8cd98f00b204e9800998ecf8427e",
        ] {
            assert_eq!(Md5Digest::from_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_md5_must_be_base64_of_sixteen_bytes() {
        assert!("1B2M2Y8AsgTpgAmY7PhCfg==".parse::<Md5Digest>().is_ok());
        assert!("d41d8cd98f00b204e9800998ecf8427e".parse::<Md5Digest>().is_err());
        assert!("AAAA".parse::<Md5Digest>().is_err());
    }
}
