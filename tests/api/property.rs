//! Property: any order of chunks, with duplicates, corrupt copies and wrong lengths
//! interleaved, assembles a byte-identical file.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[derive(Debug, Clone, Copy)]
enum Send {
    Good,
    Corrupt,
    WrongLength,
}

/// A file size, and the sends: every chunk once as a good copy in shuffled order, with
/// extra sends (any chunk, any kind) spliced in anywhere.
fn scenario() -> impl Strategy<Value = (usize, Vec<(usize, Send)>)> {
    (1usize..8 * MIN_CHUNK as usize).prop_flat_map(|size| {
        let chunks = size.div_ceil(MIN_CHUNK as usize);
        let kind = prop_oneof![Just(Send::Good), Just(Send::Corrupt), Just(Send::WrongLength)];
        let extras = proptest::collection::vec((0..chunks, kind, any::<prop::sample::Index>()), 0..12);
        let order = Just((0..chunks).collect::<Vec<_>>()).prop_shuffle();
        (Just(size), order, extras).prop_map(|(size, order, extras)| {
            let mut sends: Vec<(usize, Send)> = order.into_iter().map(|i| (i, Send::Good)).collect();
            for (index, kind, at) in extras {
                // Extras go before the final good send so the upload is still open for them.
                let position = at.index(sends.len());
                sends.insert(position, (index, kind));
            }
            (size, sends)
        })
    })
}

#[test]
fn any_order_with_duplicates_and_retries_reassembles_the_same_bytes() {
    let app = spawn_app_with(|s| s.uploads.default_chunk_size = MIN_CHUNK);
    let client = Client::new();
    let mut runner = TestRunner::new(Config { cases: 48, failure_persistence: None, ..Config::default() });
    let seed = std::sync::atomic::AtomicU64::new(100);
    runner
        .run(&scenario(), |(size, sends)| {
            let data = bytes(seed.fetch_add(1, std::sync::atomic::Ordering::Relaxed), size);
            let created: Value = client
                .post(app.url("/v1/uploads"))
                .json(&json!({"filename": "prop.bin", "size": size}))
                .send()
                .unwrap()
                .json()
                .unwrap();
            let up = Upload::from_json(&created);
            let chunk = |i: usize| &data[i * MIN_CHUNK as usize..((i + 1) * MIN_CHUNK as usize).min(size)];
            let mut remaining: std::collections::HashSet<usize> = (0..up.total_chunks as usize).collect();
            for (index, kind) in sends {
                let good = chunk(index);
                let body = match kind {
                    Send::Good => good.to_vec(),
                    Send::Corrupt => good.iter().map(|b| b ^ 0x5a).collect(),
                    Send::WrongLength => good[..good.len() - 1].to_vec(),
                };
                let response = client
                    .put(app.url(&format!("/v1/uploads/{}/chunks/{index}", up.id)))
                    .bearer_auth(&up.token)
                    .header("Content-MD5", content_md5(good))
                    .body(body)
                    .send()
                    .unwrap();
                let status = response.status();
                if remaining.is_empty() {
                    prop_assert_eq!(status, StatusCode::CONFLICT, "the upload is complete");
                    continue;
                }
                match kind {
                    Send::Good => {
                        prop_assert_eq!(status, StatusCode::OK);
                        remaining.remove(&index);
                        let state: Value = response.json().unwrap();
                        let expected = if remaining.is_empty() { "completed" } else { "uploading" };
                        prop_assert_eq!(&state["state"], expected);
                    }
                    Send::Corrupt => prop_assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY),
                    Send::WrongLength => prop_assert_eq!(status, StatusCode::BAD_REQUEST),
                }
            }
            prop_assert_eq!(std::fs::read(app.object_path(&up.key)).unwrap(), data);
            Ok(())
        })
        .unwrap();
}
