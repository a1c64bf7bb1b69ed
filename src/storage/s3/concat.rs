//! tus concatenation on S3: a final upload's object is made inside the bucket from the
//! partial uploads' kept objects (`<prefix>.ferry/<id>/partial`), as the parts of the final
//! upload's own multipart upload, then CompleteMultipartUpload.
//!
//! **Copies where S3 allows, a short stream where it does not.** UploadPartCopy copies a
//! range of an object into a part without its bytes leaving the store; but every part but
//! the last must hold at least 5 MiB, and at most 5 GiB. A partial of 5 MiB or more is
//! copied (in several ranges when it is over 5 GiB). Partials under 5 MiB cannot be parts
//! of their own: consecutive ones are grouped, and a group is streamed through ferry
//! (ranged GETs feeding one UploadPart) until it reaches 5 MiB, topped up from the head of
//! the next large partial when what is left of that one can still be copied, or taking the
//! next partial whole when it cannot. So only small partials, plus less than 5 MiB of a
//! large one per group, pass through ferry a second time, and never more than 10 MiB per
//! part in memory-bounded pieces. (tusd instead downloads every partial to a local file and
//! uploads the whole object again as soon as one partial is under 5 MiB.)
//!
//! **Never a half object.** The object appears only with CompleteMultipartUpload, which
//! is sent once every part is in. A copy or stream that fails for a passing reason leaves
//! the multipart upload for a retry (which copies every part again, under the same
//! numbers); a refusal (a partial's object gone) ends the job, and the service aborts the
//! multipart upload. A retry first looks for the object an earlier call made, whose
//! answer was lost.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use aws_sdk_s3::config::Builder as ConfigBuilder;
use aws_sdk_s3::primitives::ByteStream as SdkStream;
use aws_sdk_s3::types::CompletedPart;
use futures_util::{stream, StreamExt, TryStreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::connect::{call_timeouts, COMPLETE_TIMEOUT};
use super::{errors, multipart_id, S3ObjectStore, MAX_PARTS, MIN_PART_SIZE, PARTIAL_OBJECT};
use crate::domain::ChunkIndex;
use crate::storage::{ByteStream, ObjectStore, Partial, StagedUpload, StorageError, StoredObject};

/// S3's largest part, copied or uploaded.
const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Parts copied or streamed at once for one final upload.
const PARTS_AT_ONCE: usize = 4;
/// What `x-amz-copy-source` leaves unescaped: RFC 3986's unreserved characters and `/`.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// The bytes `[start, end)` of source `source` (a partial's kept object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    source: usize,
    start: u64,
    end: u64,
}

impl Range {
    fn len(&self) -> u64 {
        self.end - self.start
    }

    /// The range as an HTTP `Range` (and `x-amz-copy-source-range`) value.
    fn header(&self) -> String {
        format!("bytes={}-{}", self.start, self.end - 1)
    }
}

/// One part of the final upload.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Planned {
    /// UploadPartCopy of one range, inside the store.
    Copy(Range),
    /// UploadPart of these ranges, read and streamed through ferry.
    Stream(Vec<Range>),
}

/// The parts of an object made of sources of `sizes` bytes, in order: every part but the
/// last holds at least `min` bytes and none more than `max`; a source of `min` bytes or
/// more is copied, but for less than `min` of its head when it tops up a group of smaller
/// ones; a streamed part holds less than `2 * min`. Empty sources have no part.
fn plan(sizes: &[u64], min: u64, max: u64) -> Vec<Planned> {
    let mut parts = Vec::new();
    let mut group: Vec<Range> = Vec::new();
    let mut grouped = 0;
    for (source, &size) in sizes.iter().enumerate().filter(|(_, size)| **size > 0) {
        let mut start = 0;
        if grouped > 0 {
            let need = min - grouped;
            if size < need + min {
                // Too little would be left to copy: the group takes it whole.
                group.push(Range { source, start: 0, end: size });
                grouped += size;
                if grouped >= min {
                    parts.push(Planned::Stream(std::mem::take(&mut group)));
                    grouped = 0;
                }
                continue;
            }
            group.push(Range { source, start: 0, end: need });
            parts.push(Planned::Stream(std::mem::take(&mut group)));
            grouped = 0;
            start = need;
        }
        let rest = size - start;
        if rest < min {
            group.push(Range { source, start, end: size });
            grouped = rest;
            continue;
        }
        // As few copies as `max` allows, of near-equal lengths (each over `max / 2 >= min`).
        let count = rest.div_ceil(max);
        let mut at = start;
        for k in 1..=count {
            let end = start + rest * k / count;
            parts.push(Planned::Copy(Range { source, start: at, end }));
            at = end;
        }
    }
    if !group.is_empty() {
        parts.push(Planned::Stream(group));
    }
    parts
}

impl S3ObjectStore {
    /// Where a partial upload's bytes are kept once it is complete.
    fn kept_object(&self, partial: &StagedUpload) -> String {
        format!("{}{PARTIAL_OBJECT}", self.staging_prefix(partial))
    }

    /// See `ObjectStore::concatenate` and this module's notes.
    pub(super) async fn concatenate_partials(
        &self,
        upload: &StagedUpload,
        partials: &[Partial],
        size: u64,
    ) -> Result<StoredObject, StorageError> {
        let (multipart, key) = (multipart_id(upload)?, self.target_key(upload));
        let sizes: Vec<u64> = partials.iter().map(|p| p.size).collect();
        if sizes.iter().sum::<u64>() != size {
            return Err(StorageError::Refused(format!(
                "the partials hold {} bytes, not {size}",
                sizes.iter().sum::<u64>()
            )));
        }
        let sources: Vec<String> = partials.iter().map(|p| self.kept_object(&p.upload)).collect();
        let planned = plan(&sizes, MIN_PART_SIZE, MAX_PART_SIZE);
        if planned.len() as u64 > MAX_PARTS {
            return Err(StorageError::Refused(format!("{} parts is past S3's limit of {MAX_PARTS}", planned.len())));
        }
        // Only completing this upload puts an object at its key: one of the right size is
        // what an earlier call made (its answer was lost). Stores differ in how they refuse
        // a copy into a multipart upload that is gone (moto answers 500), so look first.
        if let Some(object) = self.head(&key).await?.filter(|object| object.size == size) {
            return Ok(object);
        }
        let parts = stream::iter(planned.iter().zip(1..))
            .map(|(part, number)| self.make_part(upload, &key, multipart, number, part, &sources))
            .buffered(PARTS_AT_ONCE)
            .try_collect::<Vec<_>>()
            .await;
        let refused = match parts {
            Ok(parts) => match self.complete_request(&key, multipart, parts).await {
                Ok(_) => None,
                Err(err) => Some(errors::storage(err)),
            },
            Err(err) => Some(err),
        };
        match refused {
            None => match self.head(&key).await? {
                Some(object) if object.size == size => Ok(object),
                Some(object) => Err(StorageError::Refused(format!("the object has {} bytes, not {size}", object.size))),
                None => Err(StorageError::Refused("the concatenated object is not there".into())),
            },
            // The multipart upload may be gone because an earlier call completed it (its
            // answer was lost); the key is this upload's alone.
            Some(StorageError::Refused(reason)) => self.completed_before(&key, size, reason).await,
            Some(err) => Err(err),
        }
    }

    /// Makes part `number` of the final upload: a copy, or a stream of small ranges.
    async fn make_part(
        &self,
        upload: &StagedUpload,
        key: &str,
        multipart: &str,
        number: i32,
        part: &Planned,
        sources: &[String],
    ) -> Result<CompletedPart, StorageError> {
        let etag = match part {
            Planned::Copy(range) => {
                let source = format!("{}/{}", self.bucket, sources[range.source]);
                let request = self.client.upload_part_copy().bucket(&self.bucket).key(key).upload_id(multipart);
                let request =
                    request.part_number(number).copy_source(utf8_percent_encode(&source, COPY_SOURCE).to_string());
                // A copy of up to 5 GiB may take minutes, as a completion may.
                let longer = ConfigBuilder::default().timeout_config(call_timeouts(COMPLETE_TIMEOUT, COMPLETE_TIMEOUT));
                let request = request.copy_source_range(range.header()).customize().config_override(longer);
                let out = errors::on_io(request.send()).await.map_err(errors::storage)?;
                out.copy_part_result.and_then(|r| r.e_tag)
            }
            Planned::Stream(ranges) => {
                let len = ranges.iter().map(Range::len).sum();
                let failure = Rc::new(RefCell::new(None));
                let body = self.read_ranges(ranges, sources, Rc::clone(&failure));
                let index = ChunkIndex(u32::try_from(number - 1).unwrap_or(u32::MAX));
                match ObjectStore::put_part(self, upload, index, body, len, None).await {
                    Ok(receipt) => Some(format!("\"{}\"", receipt.etag)),
                    // What broke the body (a GET) says more than the broken body does.
                    Err(err) => {
                        return Err(failure.take().unwrap_or(match err {
                            StorageError::Body(e) => StorageError::unavailable(e),
                            StorageError::IncompleteBody { .. } => {
                                StorageError::Refused("a partial upload's object is not its recorded length".into())
                            }
                            other => other,
                        }))
                    }
                }
            }
        };
        let etag = etag.ok_or_else(|| StorageError::Refused(format!("the store gave no ETag for part {number}")))?;
        Ok(CompletedPart::builder().part_number(number).e_tag(etag).build())
    }

    /// The bytes of `ranges`, in order, each a ranged GET opened when the one before is
    /// read. A GET that fails leaves its error in `failure` and breaks the stream.
    fn read_ranges<'a>(
        &'a self,
        ranges: &'a [Range],
        sources: &'a [String],
        failure: Rc<RefCell<Option<StorageError>>>,
    ) -> ByteStream<'a> {
        stream::iter(ranges)
            .then(move |range| {
                let failure = Rc::clone(&failure);
                async move {
                    let request = self.client.get_object().bucket(&self.bucket).key(&sources[range.source]);
                    match errors::on_io(request.range(range.header()).send()).await {
                        Ok(out) => Ok(pieces(out.body)),
                        Err(err) => {
                            let err = if errors::code(&err) == Some("NoSuchKey") || errors::is_not_found(&err) {
                                StorageError::Refused("the bytes of a partial upload are gone".into())
                            } else {
                                errors::storage(err)
                            };
                            *failure.borrow_mut() = Some(err);
                            Err(io::Error::other("a partial upload's bytes could not be read"))
                        }
                    }
                }
            })
            .try_flatten()
            .boxed_local()
    }
}

/// The pieces of an object's body as they arrive.
fn pieces(body: SdkStream) -> impl futures_util::Stream<Item = Result<bytes::Bytes, io::Error>> {
    stream::unfold(
        body,
        |mut body| async move { body.next().await.map(|piece| (piece.map_err(io::Error::other), body)) },
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MIN: u64 = 10;
    const MAX: u64 = 25;

    fn copy(source: usize, start: u64, end: u64) -> Planned {
        Planned::Copy(Range { source, start, end })
    }

    fn streamed(ranges: &[(usize, u64, u64)]) -> Planned {
        Planned::Stream(ranges.iter().map(|&(source, start, end)| Range { source, start, end }).collect())
    }

    #[test]
    fn large_sources_are_copied_and_small_ones_grouped() {
        assert_eq!(plan(&[10, 12], MIN, MAX), vec![copy(0, 0, 10), copy(1, 0, 12)]);
        assert_eq!(plan(&[3, 4], MIN, MAX), vec![streamed(&[(0, 0, 3), (1, 0, 4)])], "the last part may be short");
        assert_eq!(plan(&[3, 4, 5], MIN, MAX), vec![streamed(&[(0, 0, 3), (1, 0, 4), (2, 0, 5)])]);
        assert_eq!(plan(&[0, 12, 0], MIN, MAX), vec![copy(1, 0, 12)], "empty sources have no part");
    }

    #[test]
    fn a_group_is_topped_up_from_a_large_source_whose_rest_can_be_copied() {
        assert_eq!(plan(&[3, 20], MIN, MAX), vec![streamed(&[(0, 0, 3), (1, 0, 7)]), copy(1, 7, 20)]);
        // 10 left after a top-up of 7 can be copied; 9 cannot, so the group takes it whole.
        assert_eq!(plan(&[3, 17], MIN, MAX), vec![streamed(&[(0, 0, 3), (1, 0, 7)]), copy(1, 7, 17)]);
        assert_eq!(plan(&[3, 16, 2], MIN, MAX), vec![streamed(&[(0, 0, 3), (1, 0, 16)]), streamed(&[(2, 0, 2)])]);
    }

    #[test]
    fn a_source_over_the_largest_part_is_copied_in_ranges() {
        assert_eq!(plan(&[60], MIN, MAX), vec![copy(0, 0, 20), copy(0, 20, 40), copy(0, 40, 60)]);
        assert_eq!(plan(&[26], MIN, MAX), vec![copy(0, 0, 13), copy(0, 13, 26)]);
    }

    proptest! {
        /// Whatever the sizes: the parts hold every byte once, in order; every part but
        /// the last is at least `MIN`, none over `MAX`; copies are never short; streams
        /// stay under `2 * MIN`.
        #[test]
        fn any_sizes_make_valid_parts(sizes in proptest::collection::vec(prop_oneof![0u64..12, 0u64..80], 0..12)) {
            let parts = plan(&sizes, MIN, MAX);
            let ranges: Vec<Range> = parts
                .iter()
                .flat_map(|p| match p {
                    Planned::Copy(r) => vec![*r],
                    Planned::Stream(rs) => rs.clone(),
                })
                .collect();
            // The ranges walk the non-empty sources in order, each from its first byte to
            // its last without a gap or an overlap.
            let mut sources = sizes.iter().enumerate().filter(|(_, s)| **s > 0).map(|(i, _)| i);
            let mut at: Option<(usize, u64)> = None;
            for r in &ranges {
                prop_assert!(r.start < r.end && r.end <= sizes[r.source], "{:?}", r);
                match at {
                    Some((source, end)) if end < sizes[source] => prop_assert_eq!((source, end), (r.source, r.start)),
                    _ => prop_assert_eq!((sources.next(), 0), (Some(r.source), r.start)),
                }
                at = Some((r.source, r.end));
            }
            prop_assert!(sources.next().is_none(), "a source is not covered");
            if let Some((source, end)) = at {
                prop_assert_eq!(end, sizes[source]);
            }
            for (i, part) in parts.iter().enumerate() {
                let len: u64 = match part {
                    Planned::Copy(r) => {
                        prop_assert!(r.len() >= MIN);
                        r.len()
                    }
                    Planned::Stream(rs) => {
                        let len = rs.iter().map(Range::len).sum();
                        prop_assert!(len < 2 * MIN);
                        len
                    }
                };
                prop_assert!(len <= MAX);
                if i + 1 < parts.len() {
                    prop_assert!(len >= MIN, "part {} of {:?} is short", i, parts);
                }
            }
        }
    }
}
