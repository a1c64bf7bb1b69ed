//! A small server-sent events client: reads a `text/event-stream` response block by block
//! (a block ends at a blank line) and parses its fields as the HTML spec says.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use serde_json::Value;

/// How long a test waits for the next block.
const PATIENCE: Duration = Duration::from_secs(15);

/// One block of the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Only comment lines (`: …`), without the colon and the space after it.
    Comment(String),
    /// An event.
    Event(SseEvent),
}

/// An event as an `EventSource` would dispatch it.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    /// `data` as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("data is JSON ({e}): {}", self.data))
    }

    /// The position it carries as its id.
    pub fn id(&self) -> &str {
        self.id.as_deref().expect("every event has an id")
    }

    /// Its type, from `event:`.
    pub fn kind(&self) -> &str {
        self.event.as_deref().expect("every event has a type")
    }
}

/// An open stream.
pub struct EventStream {
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl EventStream {
    /// Reads `response`'s body as a stream of events.
    pub fn new(response: reqwest::Response) -> Self {
        Self { body: response.bytes_stream().boxed(), buffer: Vec::new() }
    }

    /// The next block, or `None` once the server ended the stream; panics after 15 s.
    pub async fn block(&mut self) -> Option<Block> {
        self.block_within(PATIENCE).await.expect("a block or the end within 15 s")
    }

    /// The next block within `wait`: `Err` when none came.
    pub async fn block_within(&mut self, wait: Duration) -> Result<Option<Block>, tokio::time::error::Elapsed> {
        tokio::time::timeout(wait, self.read_block()).await
    }

    /// The next event, skipping comments; `None` once the stream ended.
    pub async fn event(&mut self) -> Option<SseEvent> {
        loop {
            match self.block().await? {
                Block::Event(event) => return Some(event),
                Block::Comment(_) => {}
            }
        }
    }

    /// Events until (and with) one of type `kind`.
    pub async fn events_until(&mut self, kind: &str) -> Vec<SseEvent> {
        let mut events = Vec::new();
        loop {
            let event = self.event().await.unwrap_or_else(|| panic!("the stream ended before {kind}: {events:#?}"));
            let done = event.kind() == kind;
            events.push(event);
            if done {
                return events;
            }
        }
    }

    /// Asserts that no event comes within `wait` (comments may).
    pub async fn assert_quiet(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.block_within(left).await {
                Err(_) => return,
                Ok(Some(Block::Comment(_))) => {}
                Ok(other) => panic!("expected no event, got {other:?}"),
            }
        }
    }

    async fn read_block(&mut self) -> Option<Block> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return Some(parse(std::str::from_utf8(&block).expect("the stream is UTF-8")));
            }
            let chunk = self.body.next().await?.expect("the stream reads");
            self.buffer.extend_from_slice(&chunk);
        }
    }
}

fn parse(block: &str) -> Block {
    let (mut id, mut event, mut data, mut comments) = (None, None, Vec::new(), Vec::new());
    for line in block.lines().filter(|l| !l.is_empty()) {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "" => comments.push(value.to_owned()),
            "id" => id = Some(value.to_owned()),
            "event" => event = Some(value.to_owned()),
            "data" => data.push(value),
            other => panic!("an unexpected field {other:?} in {block:?}"),
        }
    }
    match (id, event, data.is_empty()) {
        (None, None, true) => Block::Comment(comments.join("\n")),
        (id, event, _) => Block::Event(SseEvent { id, event, data: data.join("\n") }),
    }
}
