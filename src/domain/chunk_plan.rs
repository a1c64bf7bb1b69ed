//! The chunk plan: how a file of `size` bytes is cut into `total_chunks` chunks of
//! `chunk_size` bytes (the last one shorter), and the limits that plans must respect.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The 0-based position of a chunk in its upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChunkIndex(pub u32);

impl fmt::Display for ChunkIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The limits every plan must respect (from `uploads.*` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPolicy {
    /// Largest file accepted, in bytes.
    pub max_file_size: u64,
    /// Chunk size used when the client does not ask for one.
    pub default_chunk_size: u64,
    /// Smallest chunk size a client may ask for (the S3 minimum part size).
    pub min_chunk_size: u64,
    /// Largest chunk size a client may ask for (keeps a chunk under proxy body limits).
    pub max_chunk_size: u64,
    /// Most chunks one upload may have (the S3 part limit).
    pub max_chunks: u32,
}

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkPlanError {
    /// The file is larger than `max_file_size`.
    #[error("the file is larger than the {max} bytes allowed")]
    FileTooLarge {
        /// The configured maximum.
        max: u64,
    },
    /// The requested chunk size is outside `[min, max]`.
    #[error("the chunk size must be between {min} and {max} bytes")]
    InvalidChunkSize {
        /// Smallest allowed chunk size.
        min: u64,
        /// Largest allowed chunk size.
        max: u64,
    },
    /// The requested chunk size cuts the file into more than `max` chunks.
    #[error("this chunk size makes more than {max} chunks; the smallest that fits is {min_chunk_size} bytes")]
    TooManyChunks {
        /// The configured chunk limit.
        max: u32,
        /// The smallest chunk size that would fit.
        min_chunk_size: u64,
    },
}

/// How one upload is cut into chunks. Invariant: `total_chunks == ceil(size / chunk_size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPlan {
    size: u64,
    chunk_size: u64,
    total_chunks: u32,
}

impl ChunkPlan {
    /// Plans a file of `size` bytes, with the client's chunk size if it asked for one, or
    /// the default raised just enough to stay within `max_chunks`.
    pub fn new(size: u64, requested: Option<u64>, policy: &ChunkPolicy) -> Result<Self, ChunkPlanError> {
        if size > policy.max_file_size {
            return Err(ChunkPlanError::FileTooLarge { max: policy.max_file_size });
        }
        let smallest_fitting = size.div_ceil(u64::from(policy.max_chunks.max(1)));
        let chunk_size = match requested {
            Some(c) if c < policy.min_chunk_size || c > policy.max_chunk_size => {
                return Err(ChunkPlanError::InvalidChunkSize { min: policy.min_chunk_size, max: policy.max_chunk_size })
            }
            Some(c) => c,
            None => policy.default_chunk_size.max(smallest_fitting),
        };
        let total = size.div_ceil(chunk_size);
        if total > u64::from(policy.max_chunks) {
            return Err(ChunkPlanError::TooManyChunks { max: policy.max_chunks, min_chunk_size: smallest_fitting });
        }
        let total_chunks = u32::try_from(total)
            .map_err(|_| ChunkPlanError::TooManyChunks { max: policy.max_chunks, min_chunk_size: smallest_fitting })?;
        Ok(Self { size, chunk_size, total_chunks })
    }

    /// A file sent in one piece, whatever its size: one chunk (none for an empty file).
    pub fn single(size: u64) -> Self {
        Self { size, chunk_size: size.max(1), total_chunks: u32::from(size > 0) }
    }

    /// Size of the whole file in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Size of every chunk but the last.
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// Number of chunks (0 for an empty file).
    pub fn total_chunks(&self) -> u32 {
        self.total_chunks
    }

    /// The index, if it names a chunk of this plan.
    pub fn index(&self, index: u32) -> Option<ChunkIndex> {
        (index < self.total_chunks).then_some(ChunkIndex(index))
    }

    /// Exact length in bytes of chunk `index`.
    pub fn chunk_len(&self, index: ChunkIndex) -> u64 {
        let start = self.offset(index);
        self.chunk_size.min(self.size.saturating_sub(start))
    }

    /// Byte offset of chunk `index` in the file.
    pub fn offset(&self, index: ChunkIndex) -> u64 {
        u64::from(index.0) * self.chunk_size
    }

    /// Every chunk index of the plan, in order.
    pub fn indices(&self) -> impl Iterator<Item = ChunkIndex> {
        (0..self.total_chunks).map(ChunkIndex)
    }

    /// The chunks of the plan not among `received` (indices in ascending order), in order.
    pub fn missing(&self, received: impl IntoIterator<Item = u32>) -> Vec<u32> {
        let mut received = received.into_iter().peekable();
        self.indices()
            .map(|i| i.0)
            .filter(|i| {
                while received.next_if(|r| r < i).is_some() {}
                received.next_if_eq(i).is_none()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn policy() -> ChunkPolicy {
        ChunkPolicy {
            max_file_size: 50 * 1024 * MIB,
            default_chunk_size: 8 * MIB,
            min_chunk_size: 5 * MIB,
            max_chunk_size: 30 * MIB,
            max_chunks: 10_000,
        }
    }

    #[test]
    fn an_empty_file_has_no_chunks() {
        let plan = ChunkPlan::new(0, None, &policy()).unwrap();
        assert_eq!(plan.total_chunks(), 0);
        assert_eq!(plan.index(0), None);
    }

    #[test]
    fn the_last_chunk_carries_the_remainder() {
        let plan = ChunkPlan::new(20 * MIB + 3, None, &policy()).unwrap();
        assert_eq!(plan.total_chunks(), 3);
        assert_eq!(plan.chunk_len(ChunkIndex(0)), 8 * MIB);
        assert_eq!(plan.chunk_len(ChunkIndex(2)), 4 * MIB + 3);
    }

    #[test]
    fn the_default_chunk_size_grows_to_stay_within_max_chunks() {
        let policy = ChunkPolicy { max_file_size: 200 * 1024 * MIB, ..policy() };
        let size = 100 * 1024 * MIB;
        let plan = ChunkPlan::new(size, None, &policy).unwrap();
        assert_eq!(plan.total_chunks(), 10_000);
        assert_eq!(plan.chunk_size(), size.div_ceil(10_000));
    }

    #[test]
    fn requested_chunk_sizes_outside_the_limits_are_refused() {
        assert!(matches!(
            ChunkPlan::new(100 * MIB, Some(MIB), &policy()),
            Err(ChunkPlanError::InvalidChunkSize { .. })
        ));
        assert!(matches!(
            ChunkPlan::new(100 * MIB, Some(31 * MIB), &policy()),
            Err(ChunkPlanError::InvalidChunkSize { .. })
        ));
    }

    #[test]
    fn a_requested_chunk_size_making_too_many_chunks_is_refused() {
        let err = ChunkPlan::new(50 * 1024 * MIB, Some(5 * MIB), &policy()).unwrap_err();
        assert!(matches!(err, ChunkPlanError::TooManyChunks { max: 10_000, .. }));
    }

    #[test]
    fn a_file_over_the_limit_is_refused() {
        let err = ChunkPlan::new(50 * 1024 * MIB + 1, None, &policy()).unwrap_err();
        assert_eq!(err, ChunkPlanError::FileTooLarge { max: 50 * 1024 * MIB });
    }

    proptest! {
        #[test]
        fn chunks_tile_the_file_exactly(size in 0u64..200 * 1024 * 1024 * 1024, requested in proptest::option::of(5 * MIB..=30 * MIB)) {
            let policy = ChunkPolicy { max_file_size: u64::MAX, ..policy() };
            if let Ok(plan) = ChunkPlan::new(size, requested, &policy) {
                prop_assert!(plan.total_chunks() <= policy.max_chunks);
                let mut next = 0;
                for index in plan.indices() {
                    prop_assert_eq!(plan.offset(index), next);
                    let len = plan.chunk_len(index);
                    prop_assert!(len > 0 && len <= plan.chunk_size());
                    next += len;
                }
                prop_assert_eq!(next, size);
            } else {
                prop_assert!(requested.is_some(), "only a requested size may be refused below the file limit");
            }
        }
    }
}
