//! The whole-file checksum: CRC-64/NVME, S3's full-object checksum algorithm. Computed
//! while bytes stream (SIMD, by `crc-fast`) and combined across chunks without reading them
//! again: the CRC of `a ++ b` follows from the CRCs of `a` and `b` and the length of `b`.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use crc_fast::CrcAlgorithm::Crc64Nvme;
use serde::{Deserialize, Serialize};

/// A CRC-64/NVME value. Shown as S3 shows it (`x-amz-checksum-crc64nvme`): the base64 of its
/// 8 big-endian bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Crc64(u64);

impl Crc64 {
    /// The CRC of no bytes at all.
    pub const EMPTY: Crc64 = Crc64(0);

    /// The CRC of `data`, in one go.
    pub fn of(data: &[u8]) -> Self {
        Self(crc_fast::checksum(Crc64Nvme, data))
    }

    /// The value as a number.
    pub fn value(self) -> u64 {
        self.0
    }

    /// The CRC of this CRC's bytes followed by `next`'s, which are `next_len` bytes long.
    pub fn then(self, next: Crc64, next_len: u64) -> Self {
        match next_len {
            0 => self,
            _ => Self(crc_fast::checksum_combine(Crc64Nvme, self.0, next.0, next_len)),
        }
    }

    /// The CRC of pieces laid end to end, given each piece's CRC and length, in order.
    pub fn concat(pieces: impl IntoIterator<Item = (Crc64, u64)>) -> Self {
        pieces.into_iter().fold(Self::EMPTY, |whole, (crc, len)| whole.then(crc, len))
    }
}

impl From<u64> for Crc64 {
    fn from(value: u64) -> Self {
        Self(value)
    }
}

/// The text was not the base64 of 8 bytes.
#[derive(Debug, thiserror::Error)]
#[error("not the base64 of an 8-byte CRC-64/NVME")]
pub struct InvalidCrc64;

impl FromStr for Crc64 {
    type Err = InvalidCrc64;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = STANDARD.decode(s.trim()).map_err(|_| InvalidCrc64)?;
        let bytes: [u8; 8] = bytes.try_into().map_err(|_| InvalidCrc64)?;
        Ok(Self(u64::from_be_bytes(bytes)))
    }
}

impl TryFrom<String> for Crc64 {
    type Error = InvalidCrc64;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Crc64> for String {
    fn from(c: Crc64) -> Self {
        c.to_string()
    }
}

impl fmt::Display for Crc64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0.to_be_bytes()))
    }
}

impl fmt::Debug for Crc64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Crc64({self})")
    }
}

/// Computes a CRC-64/NVME over bytes as they stream past.
#[derive(Clone)]
pub struct Crc64Hasher(crc_fast::Digest);

impl Default for Crc64Hasher {
    fn default() -> Self {
        Self(crc_fast::Digest::new(Crc64Nvme))
    }
}

impl Crc64Hasher {
    /// Feeds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The CRC of everything seen so far.
    pub fn value(&self) -> Crc64 {
        Crc64(self.0.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-64/NVME bit by bit, from the catalogue's parameters alone (reflected polynomial
    /// 0x9a6c9329ac4bc9b5, all-ones start and final XOR): an implementation independent of
    /// the SIMD one under test.
    fn reference(data: &[u8]) -> u64 {
        let mut crc = u64::MAX;
        for byte in data {
            crc ^= u64::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0x9a6c_9329_ac4b_c9b5 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn the_catalogue_check_value_and_the_empty_input() {
        // The CRC catalogue's check value: the CRC of "123456789".
        assert_eq!(Crc64::of(b"123456789").value(), 0xae8b_1486_0a79_9888);
        assert_eq!(reference(b"123456789"), 0xae8b_1486_0a79_9888);
        assert_eq!(Crc64::of(b""), Crc64::EMPTY);
    }

    #[test]
    fn agrees_with_the_independent_implementation() {
        let data = crate::storage::contract::bytes(5, 100_003);
        for len in [1, 7, 15, 16, 17, 63, 64, 65, 255, 256, 4096, 100_003] {
            assert_eq!(Crc64::of(&data[..len]).value(), reference(&data[..len]), "{len} bytes");
        }
    }

    #[test]
    fn streaming_and_combining_give_the_one_shot_value() {
        let data = crate::storage::contract::bytes(6, 1 << 20);
        let mut hasher = Crc64Hasher::default();
        for piece in data.chunks(1000) {
            hasher.update(piece);
        }
        assert_eq!(hasher.value(), Crc64::of(&data));
        let pieces = [0..1, 1..70_000, 70_000..70_000, 70_000..(1 << 20)];
        let whole = Crc64::concat(pieces.iter().map(|r| (Crc64::of(&data[r.clone()]), r.len() as u64)));
        assert_eq!(whole, Crc64::of(&data));
    }

    #[test]
    fn shown_as_s3_shows_it() {
        // S3's x-amz-checksum-crc64nvme of "123456789".
        let crc = Crc64::of(b"123456789");
        assert_eq!(crc.to_string(), "rosUhgp5mIg=");
        assert_eq!("rosUhgp5mIg=".parse::<Crc64>().unwrap(), crc);
        assert!("rosUhgp5mI==".parse::<Crc64>().is_err());
        assert!("AAAA".parse::<Crc64>().is_err());
    }
}
