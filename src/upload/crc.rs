//! The whole-file checksum on its way through: each body's CRC-64/NVME is computed as its
//! bytes pass to storage, and an upload's is combined from its pieces' at completion.

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::StreamExt;

use crate::domain::{ChunkIndex, Crc64, Crc64Hasher, PartReceipt};
use crate::storage::ByteStream;

/// Reads the CRC-64/NVME of the bytes a body passed on, once the store has taken them.
#[derive(Clone, Default)]
pub(super) struct CrcTap(Rc<RefCell<(Crc64Hasher, u64)>>);

impl CrcTap {
    /// `body`, with every byte it yields hashed into the tap.
    pub(super) fn tap<'a>(&self, body: ByteStream<'a>) -> ByteStream<'a> {
        let tap = Rc::clone(&self.0);
        body.inspect(move |piece| {
            if let Ok(piece) = piece {
                let mut tap = tap.borrow_mut();
                tap.0.update(piece);
                tap.1 += piece.len() as u64;
            }
        })
        .boxed_local()
    }

    /// The CRC of the first `len` bytes passed on (what the store kept), if known: all of
    /// them, or none (a store that keeps only whole parts may keep fewer than it was given).
    pub(super) fn crc_of(&self, len: u64) -> Option<Crc64> {
        let tap = self.0.borrow();
        match len {
            0 => Some(Crc64::EMPTY),
            len if len == tap.1 => Some(tap.0.value()),
            _ => None,
        }
    }
}

/// The CRC-64/NVME of an object made of `parts` in order, if every part's is known.
pub(super) fn whole_file(parts: &[(ChunkIndex, PartReceipt)]) -> Option<Crc64> {
    let pieces: Option<Vec<_>> = parts.iter().map(|(_, r)| r.crc64.map(|crc| (crc, r.size))).collect();
    pieces.map(Crc64::concat)
}

/// Why an object whose bytes hash to `actual` must not be made, when the client declared
/// `declared`.
pub(super) fn mismatch(declared: Option<Crc64>, actual: Option<Crc64>) -> Option<String> {
    match (declared, actual) {
        (Some(declared), Some(actual)) if declared != actual => Some(format!(
            "the file's CRC-64/NVME is {actual}, not the {declared} declared at creation: the object was not made"
        )),
        _ => None,
    }
}
