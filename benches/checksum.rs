//! The cost of the whole-file checksum: CRC-64/NVME throughput as ferry computes it while
//! bytes stream (in memory), as `ferry upload` computes it before opening an upload (a
//! file read in 1 MiB pieces, from the page cache), and the cost of combining one piece's
//! value at completion.
//!
//! ```text
//! cargo bench --bench checksum
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::time::Instant;

use ferry::domain::{Crc64, Crc64Hasher};

const GIB: usize = 1 << 30;
const ROUNDS: usize = 5;

fn median(mut seconds: Vec<f64>) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("checksum: a benchmark; run it with `cargo bench --bench checksum`");
        return;
    }
    let data = ferry::storage::contract::bytes(1, 256 << 20);
    let memory = median(
        (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                let mut hasher = Crc64Hasher::default();
                for piece in data.chunks(64 << 10) {
                    hasher.update(piece);
                }
                std::hint::black_box(hasher.value());
                start.elapsed().as_secs_f64()
            })
            .collect(),
    );
    println!("in memory, 64 KiB pieces: {:.2} GiB/s", data.len() as f64 / memory / GIB as f64);

    let mut file = tempfile::NamedTempFile::new().unwrap();
    for _ in 0..4 {
        file.write_all(&data).unwrap();
    }
    file.flush().unwrap();
    let read = median(
        (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                let mut reader = std::fs::File::open(file.path()).unwrap();
                let (mut hasher, mut buffer) = (Crc64Hasher::default(), vec![0u8; 1 << 20]);
                loop {
                    match reader.read(&mut buffer).unwrap() {
                        0 => break,
                        n => hasher.update(&buffer[..n]),
                    }
                }
                std::hint::black_box(hasher.value());
                start.elapsed().as_secs_f64()
            })
            .collect(),
    );
    println!("a 1 GiB file from the page cache, 1 MiB reads: {read:.3} s ({:.2} GiB/s)", 1.0 / read);

    let pieces: Vec<(Crc64, u64)> = (0..10_000).map(|i| (Crc64::from(i * 7919), 8 << 20)).collect();
    let combine = median(
        (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(Crc64::concat(pieces.iter().copied()));
                start.elapsed().as_secs_f64()
            })
            .collect(),
    );
    println!("combining 10,000 chunks' values at completion: {:.2} ms", combine * 1000.0);
}
