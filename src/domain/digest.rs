//! Whole-request digests a client may declare for what it appends (tus's checksum
//! extension, and later RFC 9530 digests): the algorithms, and a hasher fed while the
//! bytes stream.

use std::fmt;

use md5::{Digest as _, Md5};
use sha2::Sha256;

/// A digest algorithm a client may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// MD5 (16 bytes).
    Md5,
    /// SHA-1 (20 bytes).
    Sha1,
    /// SHA-256 (32 bytes).
    Sha256,
    /// CRC-32 (ISO-HDLC, as zlib), 4 bytes big-endian.
    Crc32,
}

impl DigestAlgorithm {
    /// Every algorithm, in the order servers advertise them.
    pub const ALL: [DigestAlgorithm; 4] = [Self::Md5, Self::Sha1, Self::Sha256, Self::Crc32];

    /// The algorithm named `name` (tus spelling, any case).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// The tus name: `md5`, `sha1`, `sha256`, `crc32`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Crc32 => "crc32",
        }
    }

    /// How many bytes a digest has.
    pub fn digest_len(&self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Crc32 => 4,
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A digest the client declared for the bytes of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredDigest {
    /// Its algorithm.
    pub algorithm: DigestAlgorithm,
    /// Its bytes (as many as the algorithm makes).
    pub bytes: Vec<u8>,
}

/// Hashes bytes as they stream with one algorithm.
pub enum DigestHasher {
    /// MD5.
    Md5(Md5),
    /// SHA-1.
    Sha1(sha1::Sha1),
    /// SHA-256.
    Sha256(Sha256),
    /// CRC-32.
    Crc32(crc32fast::Hasher),
}

impl DigestHasher {
    /// A fresh hasher for `algorithm`.
    pub fn new(algorithm: DigestAlgorithm) -> Self {
        match algorithm {
            DigestAlgorithm::Md5 => Self::Md5(Md5::new()),
            DigestAlgorithm::Sha1 => Self::Sha1(sha1::Sha1::new()),
            DigestAlgorithm::Sha256 => Self::Sha256(Sha256::new()),
            DigestAlgorithm::Crc32 => Self::Crc32(crc32fast::Hasher::new()),
        }
    }

    /// Feeds `data`.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Md5(h) => h.update(data),
            Self::Sha1(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Crc32(h) => h.update(data),
        }
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Vec<u8> {
        match self {
            Self::Md5(h) => h.finalize().to_vec(),
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(algorithm: DigestAlgorithm, data: &[u8]) -> String {
        let mut h = DigestHasher::new(algorithm);
        h.update(&data[..3]);
        h.update(&data[3..]);
        h.finish().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn every_algorithm_matches_its_published_vector() {
        let data = b"hello world";
        assert_eq!(digest(DigestAlgorithm::Md5, data), "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(digest(DigestAlgorithm::Sha1, data), "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed");
        assert_eq!(
            digest(DigestAlgorithm::Sha256, data),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(digest(DigestAlgorithm::Crc32, data), "0d4a1185");
    }

    #[test]
    fn names_parse_in_any_case_and_unknown_ones_do_not() {
        assert_eq!(DigestAlgorithm::parse("SHA256"), Some(DigestAlgorithm::Sha256));
        assert_eq!(DigestAlgorithm::parse("crc32"), Some(DigestAlgorithm::Crc32));
        assert_eq!(DigestAlgorithm::parse("sha512"), None);
        assert!(DigestAlgorithm::ALL.iter().all(|a| DigestHasher::new(*a).finish().len() == a.digest_len()));
    }
}
