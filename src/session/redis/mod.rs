//! The Redis session store, shared by every instance. Each state change is one Lua script
//! over the upload's own keys, which share a hash tag (`<prefix>:v1:{<id>}:…`), so each
//! script stays within one Redis Cluster slot. The due index, a sorted set, is a key of
//! its own (another slot); scripts cannot touch it atomically, so it holds a lower bound
//! of each upload's due time: calls that may start a claim lower the entry (`ZADD LT`,
//! sent beside the script, never pipelined with it), and the sweeper moves an entry it
//! finds early to the record's real due time. A chunk costs two round trips in all: read
//! the record, then record the chunk. `connection` owns how requests reach Redis
//! (standalone or cluster, TLS, reconnecting). Needs Redis 6.2 or later (`ZADD LT`).

mod connection;
mod fields;
mod log;
mod outbox;
mod process;
mod scripts;
mod wire;

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::Duration;
use redis::{FromRedisValue, Script};

use self::connection::Redis;
use self::fields::{from_fields, ms, pairs, to_fields};
use self::scripts::Scripts;
use self::wire::{claim_at, flag, is_noscript, margin, millis, number, state_of, tagged, time, SAFETY_MARGIN_MS};
use super::codec::{decode_receipt, encode};
use super::{
    AppendEnd, AppendProgress, AppendStart, CancelOutcome, Finish, PendingEvents, ProcessOutcome, RecordOutcome,
    Retired, SessionError, SessionStore,
};
use crate::config::RedisSettings;
use crate::domain::{ChunkIndex, Claim, PartReceipt, ProcessingReport, Timestamp, UploadId, UploadRecord};

/// How a call moves the upload's entry in the due index.
#[derive(Debug, Clone, Copy)]
enum Index {
    /// Adds the entry at this time (a new upload).
    Add(Timestamp),
    /// Moves the entry to this time if that is earlier (a claim may start or go on).
    Lower(Timestamp),
}

/// A `SessionStore` in Redis.
pub struct RedisSessionStore {
    redis: Redis,
    prefix: String,
    scripts: Scripts,
    groups: log::Groups,
}

impl RedisSessionStore {
    /// A store on the one Redis at `url`, every key under `prefix`, counting each round
    /// trip in `round_trips`. Connects lazily: a Redis that is down now makes calls fail
    /// with `Unavailable` until it is back.
    pub fn new(url: &str, prefix: &str, round_trips: prometheus::IntCounter) -> Result<Self, SessionError> {
        let settings = RedisSettings { url: url.to_owned(), key_prefix: prefix.to_owned(), ..RedisSettings::default() };
        Self::with_settings(&settings, round_trips)
    }

    /// A store on the Redis (one server or a cluster, plain or TLS) that `settings`
    /// describe, counting each round trip in `round_trips`. Connects lazily.
    pub fn with_settings(settings: &RedisSettings, round_trips: prometheus::IntCounter) -> Result<Self, SessionError> {
        let scripts = Scripts::new();
        let redis = Redis::new(settings, round_trips)?;
        Ok(Self { redis, prefix: settings.key_prefix.clone(), scripts, groups: log::Groups::default() })
    }

    fn upload_key(&self, id: &UploadId) -> String {
        format!("{}:v1:{{{id}}}:upload", self.prefix)
    }

    fn parts_key(&self, id: &UploadId) -> String {
        format!("{}:v1:{{{id}}}:parts", self.prefix)
    }

    fn expiry_key(&self) -> String {
        format!("{}:v1:expiry", self.prefix)
    }

    /// Sends `pipe` (commands within one slot) and decodes its replies.
    async fn query<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, SessionError> {
        self.redis.query(pipe).await
    }

    /// Runs `script` on the upload's keys (its record, receipts and outbox) and moves the
    /// upload's entry in the due index as `index` says, and in the outbox index when
    /// `events` says the script may record an event at that time, by requests sent beside
    /// it (the indexes live in other cluster slots), in the same round trip of latency. A
    /// Redis that lost its script cache (a restart) costs one more trip to load it again.
    async fn run<T: FromRedisValue>(
        &self,
        script: &Script,
        id: &UploadId,
        args: &[String],
        index: Option<Index>,
        events: Option<Timestamp>,
    ) -> Result<T, SessionError> {
        let mut invocation = script.key(self.upload_key(id));
        invocation.key(self.parts_key(id));
        invocation.key(self.outbox_key(id));
        for arg in args {
            invocation.arg(arg);
        }
        let mut pipe = redis::pipe();
        pipe.invoke_script(&invocation);
        let mut beside = Vec::new();
        if let Some(index) = index {
            let mut update = redis::pipe();
            match index {
                Index::Add(at) => update.zadd(self.expiry_key(), id.to_string(), ms(at)).ignore(),
                Index::Lower(at) => {
                    update.cmd("ZADD").arg(self.expiry_key()).arg("LT").arg(ms(at)).arg(id.to_string()).ignore()
                }
            };
            beside.push(update);
        }
        if let Some(at) = events {
            beside.push(self.index_outbox(id, at));
        }
        let call = || async {
            match beside.is_empty() {
                false => self.redis.query_beside::<(T,)>(&pipe, &beside).await,
                true => self.redis.query::<(T,)>(&pipe).await,
            }
        };
        match call().await {
            Err(SessionError::Unavailable(e)) if is_noscript(e.as_ref()) => {
                self.load_scripts().await?;
                Ok(call().await?.0)
            }
            other => Ok(other?.0),
        }
    }

    /// Sends `pipe` (script calls within one slot); a Redis that lost its script cache
    /// costs one more trip to load it again.
    async fn call_script<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, SessionError> {
        match self.query(pipe).await {
            Err(SessionError::Unavailable(e)) if is_noscript(e.as_ref()) => {
                self.load_scripts().await?;
                self.query(pipe).await
            }
            other => other,
        }
    }

    /// Loads every script into Redis's script cache (of every primary, on a cluster), in
    /// one round trip. Done at start-up and again whenever Redis has lost its cache.
    pub async fn load_scripts(&self) -> Result<(), SessionError> {
        self.redis.load_scripts(&self.scripts.all()).await
    }
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    #[tracing::instrument(name = "redis.insert", skip_all, fields(upload_id = %record.id))]
    async fn insert(&self, record: &UploadRecord) -> Result<(), SessionError> {
        let mut args = vec![(ms(record.expires_at) + SAFETY_MARGIN_MS).to_string(), ms(record.created_at).to_string()];
        for (field, value) in to_fields(record)? {
            args.push(field.to_owned());
            args.push(value);
        }
        let created: i64 = self
            .run(&self.scripts.insert, &record.id, &args, Some(Index::Add(record.due_at())), Some(record.created_at))
            .await?;
        if created == 1 {
            Ok(())
        } else {
            Err(SessionError::AlreadyExists)
        }
    }

    async fn get(&self, id: &UploadId) -> Result<Option<UploadRecord>, SessionError> {
        let mut pipe = redis::pipe();
        pipe.hgetall(self.upload_key(id));
        let (fields,): (HashMap<String, String>,) = self.query(&pipe).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        from_fields(&fields).map(Some)
    }

    async fn parts(&self, id: &UploadId) -> Result<Vec<(ChunkIndex, PartReceipt)>, SessionError> {
        let mut pipe = redis::pipe();
        pipe.hgetall(self.parts_key(id));
        let (fields,): (HashMap<u32, String>,) = self.query(&pipe).await?;
        let mut parts = fields
            .into_iter()
            .map(|(index, receipt)| Ok((ChunkIndex(index), decode_receipt(receipt.as_bytes())?)))
            .collect::<Result<Vec<_>, SessionError>>()?;
        parts.sort_by_key(|(index, _)| *index);
        Ok(parts)
    }

    async fn parts_in(
        &self,
        id: &UploadId,
        chunks: std::ops::Range<u32>,
    ) -> Result<Vec<(ChunkIndex, PartReceipt)>, SessionError> {
        if chunks.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET").arg(self.parts_key(id)).arg(chunks.clone().collect::<Vec<_>>());
        let (receipts,): (Vec<Option<String>>,) = self.query(&pipe).await?;
        chunks
            .zip(receipts)
            .filter_map(|(index, receipt)| receipt.map(|r| (index, r)))
            .map(|(index, receipt)| Ok((ChunkIndex(index), decode_receipt(receipt.as_bytes())?)))
            .collect()
    }

    #[tracing::instrument(name = "redis.record_part", skip_all, fields(upload_id = %id, chunk = %index))]
    async fn record_part(
        &self,
        id: &UploadId,
        index: ChunkIndex,
        receipt: &PartReceipt,
        now: Timestamp,
        ttl: Duration,
        lease: Duration,
        progress: bool,
    ) -> Result<RecordOutcome, SessionError> {
        let receipt_json = String::from_utf8(encode(receipt)?).map_err(|e| SessionError::Corrupt(e.to_string()))?;
        let args = [
            index.0.to_string(),
            receipt_json,
            receipt.size.to_string(),
            ms(now).to_string(),
            millis(ttl),
            millis(lease),
            margin(),
            flag(progress),
        ];
        // Any chunk may be the one that fills the last gap and takes the claim.
        let index = Index::Lower(now + lease);
        let events = progress.then_some(now);
        let reply: Vec<String> = self.run(&self.scripts.record, id, &args, Some(index), events).await?;
        match tagged(&reply) {
            ("ok", rest) => {
                let claim = claim_at(rest, 2)?;
                let replaced = match rest.get(4).map(String::as_str) {
                    None | Some("") => None,
                    Some(old) => Some(decode_receipt(old.as_bytes())?),
                };
                Ok(RecordOutcome::Recorded {
                    received_chunks: number(rest.first())?,
                    bytes_received: number(rest.get(1))?,
                    claim,
                    replaced,
                })
            }
            ("refused", rest) => Ok(RecordOutcome::Refused(state_of(rest)?)),
            _ => Ok(RecordOutcome::NotFound),
        }
    }

    #[tracing::instrument(name = "redis.claim", skip_all, fields(upload_id = %id))]
    async fn claim(&self, id: &UploadId, now: Timestamp, lease: Duration) -> Result<Option<Claim>, SessionError> {
        let args = [ms(now).to_string(), millis(lease), margin()];
        let reply: Vec<i64> = self.run(&self.scripts.claim, id, &args, Some(Index::Lower(now + lease)), None).await?;
        match reply.as_slice() {
            [fence, until] => Ok(Some(Claim { fence: u64::try_from(*fence).unwrap_or(0), until: time(*until)? })),
            _ => Ok(None),
        }
    }

    #[tracing::instrument(name = "redis.renew", skip_all, fields(upload_id = %id, fence))]
    async fn renew(&self, id: &UploadId, fence: u64, now: Timestamp, lease: Duration) -> Result<bool, SessionError> {
        let args = [fence.to_string(), ms(now).to_string(), millis(lease), margin()];
        let renewed: i64 = self.run(&self.scripts.renew, id, &args, Some(Index::Lower(now + lease)), None).await?;
        Ok(renewed == 1)
    }

    #[tracing::instrument(name = "redis.finish", skip_all, fields(upload_id = %id, fence))]
    async fn finish(
        &self,
        id: &UploadId,
        fence: u64,
        outcome: &Finish,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<bool, SessionError> {
        let (kind, text, chunks): (&str, &str, &[ChunkIndex]) = match outcome {
            Finish::Completed { etag, .. } => ("completed", etag, &[]),
            Finish::Failed { error } => ("failed", error, &[]),
            Finish::Release => ("release", "", &[]),
            Finish::Reopen { chunks } => ("reopen", "", chunks),
        };
        let checksum = match outcome {
            Finish::Completed { checksum: Some(crc), .. } => crc.to_string(),
            _ => String::new(),
        };
        let mut args =
            vec![fence.to_string(), kind.into(), text.into(), ms(now).to_string(), millis(ttl), margin(), checksum];
        args.extend(chunks.iter().map(|c| c.0.to_string()));
        // Every outcome leaves the upload due no earlier than the claim's entry says.
        let events = matches!(outcome, Finish::Completed { .. } | Finish::Failed { .. }).then_some(now);
        let done: i64 = self.run(&self.scripts.finish, id, &args, None, events).await?;
        Ok(done == 1)
    }

    async fn touch(&self, id: &UploadId, now: Timestamp, ttl: Duration) -> Result<Option<UploadRecord>, SessionError> {
        let args = [ms(now).to_string(), millis(ttl), margin()];
        let reply: Vec<String> = self.run(&self.scripts.touch, id, &args, None, None).await?;
        if reply.is_empty() {
            return Ok(None);
        }
        from_fields(&pairs(&reply)).map(Some)
    }

    #[tracing::instrument(name = "redis.begin_append", skip_all, fields(upload_id = %id, offset))]
    async fn begin_append(
        &self,
        id: &UploadId,
        offset: u64,
        now: Timestamp,
        ttl: Duration,
        lease: Duration,
    ) -> Result<AppendStart, SessionError> {
        let args = [offset.to_string(), ms(now).to_string(), millis(ttl), millis(lease), margin()];
        let reply: Vec<String> = self.run(&self.scripts.begin_append, id, &args, None, None).await?;
        match tagged(&reply) {
            ("granted", rest) => {
                let claim = Claim { fence: number(rest.first())?, until: time(number(rest.get(1))?)? };
                let record = from_fields(&pairs(rest.get(2..).unwrap_or_default()))?;
                Ok(AppendStart::Granted { claim, record: Box::new(record) })
            }
            ("offset", rest) => Ok(AppendStart::OffsetMismatch { expected: number(rest.first())? }),
            ("busy", _) => Ok(AppendStart::Busy),
            ("refused", rest) => Ok(AppendStart::Refused(state_of(rest)?)),
            _ => Ok(AppendStart::NotFound),
        }
    }

    #[tracing::instrument(name = "redis.end_append", skip_all, fields(upload_id = %id, fence))]
    async fn end_append(
        &self,
        id: &UploadId,
        fence: u64,
        progress: &AppendProgress,
        now: Timestamp,
        ttl: Duration,
        lease: Duration,
    ) -> Result<AppendEnd, SessionError> {
        let mut args = vec![
            fence.to_string(),
            ms(now).to_string(),
            millis(ttl),
            millis(lease),
            margin(),
            progress.offset.to_string(),
            progress.cursor.clone(),
            progress.length.map(|l| l.to_string()).unwrap_or_default(),
            flag(progress.report_progress),
            progress.crc64.map(|crc| crc.to_string()).unwrap_or_default(),
        ];
        for (index, receipt) in &progress.parts {
            args.push(index.0.to_string());
            args.push(String::from_utf8(encode(receipt)?).map_err(|e| SessionError::Corrupt(e.to_string()))?);
        }
        // This append may store the last byte and take the completion claim.
        let index = Index::Lower(now + lease);
        let events = progress.report_progress.then_some(now);
        let reply: Vec<String> = self.run(&self.scripts.end_append, id, &args, Some(index), events).await?;
        match tagged(&reply) {
            ("ok", rest) => {
                let claim = claim_at(rest, 2)?;
                let length = match rest.get(1).map(String::as_str) {
                    None | Some("") => None,
                    Some(_) => Some(number(rest.get(1))?),
                };
                Ok(AppendEnd::Recorded { offset: number(rest.first())?, length, claim })
            }
            _ => Ok(AppendEnd::Lost),
        }
    }

    #[tracing::instrument(name = "redis.cancel", skip_all, fields(upload_id = %id))]
    async fn cancel(&self, id: &UploadId, now: Timestamp, ttl: Duration) -> Result<CancelOutcome, SessionError> {
        let args = [ms(now).to_string(), millis(ttl), margin()];
        let reply: Vec<String> = self.run(&self.scripts.cancel, id, &args, None, Some(now)).await?;
        match tagged(&reply) {
            ("canceled", before) => Ok(CancelOutcome::Canceled(Box::new(from_fields(&pairs(before))?))),
            ("refused", rest) => Ok(CancelOutcome::Refused(state_of(rest)?)),
            _ => Ok(CancelOutcome::NotFound),
        }
    }

    async fn due(&self, now: Timestamp, limit: usize) -> Result<Vec<(UploadId, Timestamp)>, SessionError> {
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGE")
            .arg(self.expiry_key())
            .arg("-inf")
            .arg(ms(now))
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .arg("WITHSCORES");
        let (entries,): (Vec<(String, f64)>,) = self.query(&pipe).await?;
        // An entry this release cannot read is skipped, not allowed to stop the sweep.
        Ok(entries
            .iter()
            .filter_map(|(id, at)| Some((id.parse().ok()?, chrono::DateTime::from_timestamp_millis(*at as i64)?)))
            .collect())
    }

    async fn reschedule(&self, id: &UploadId, from: Timestamp, to: Option<Timestamp>) -> Result<(), SessionError> {
        let mut invocation = self.scripts.reschedule.key(self.expiry_key());
        invocation.arg(id.to_string()).arg(ms(from)).arg(to.map(|t| ms(t).to_string()).unwrap_or_default());
        let mut pipe = redis::pipe();
        pipe.invoke_script(&invocation).ignore();
        match self.query::<()>(&pipe).await {
            Err(SessionError::Unavailable(e)) if is_noscript(e.as_ref()) => {
                self.load_scripts().await?;
                self.query::<()>(&pipe).await
            }
            other => other,
        }
    }

    #[tracing::instrument(name = "redis.retire", skip_all, fields(upload_id = %id))]
    async fn retire(&self, id: &UploadId, now: Timestamp) -> Result<Retired, SessionError> {
        let reply: Vec<String> = self.run(&self.scripts.retire, id, &[ms(now).to_string()], None, Some(now)).await?;
        match tagged(&reply) {
            ("retired", before) => Ok(Retired::Retired(Box::new(from_fields(&pairs(before))?))),
            ("due", rest) => Ok(Retired::NotDue(time(number(rest.first())?)?)),
            ("unfinished", _) => Ok(Retired::Unfinished),
            _ => Ok(Retired::NotFound),
        }
    }

    #[tracing::instrument(name = "redis.remove_expired", skip_all, fields(upload_id = %id))]
    async fn remove_expired(&self, id: &UploadId, now: Timestamp) -> Result<Option<UploadRecord>, SessionError> {
        let reply: Vec<String> = self.run(&self.scripts.remove, id, &[ms(now).to_string()], None, None).await?;
        let (tag, before) = tagged(&reply);
        if tag == "kept" {
            return Ok(None);
        }
        // Gone, or never there (an index entry left by a refused call): drop the entry.
        let mut pipe = redis::pipe();
        pipe.zrem(self.expiry_key(), id.to_string()).ignore();
        self.query::<()>(&pipe).await?;
        match tag {
            "removed" => from_fields(&pairs(before)).map(Some),
            _ => Ok(None),
        }
    }

    #[tracing::instrument(name = "redis.process", skip_all, fields(upload_id = %id))]
    async fn process(
        &self,
        id: &UploadId,
        report: &ProcessingReport,
        now: Timestamp,
        ttl: Duration,
    ) -> Result<ProcessOutcome, SessionError> {
        self.apply_report(id, report, now, ttl).await
    }

    async fn outbox(&self, now: Timestamp, lease: Duration, limit: usize) -> Result<Vec<PendingEvents>, SessionError> {
        self.read_outbox(now, lease, limit).await
    }

    async fn published(&self, batch: &PendingEvents, now: Timestamp) -> Result<(), SessionError> {
        self.forget(batch, now).await
    }

    async fn outbox_backlog(&self) -> Result<u64, SessionError> {
        self.count_outbox_uploads().await
    }

    async fn ping(&self) -> Result<(), SessionError> {
        let mut pipe = redis::pipe();
        pipe.cmd("PING");
        let (_pong,): (String,) = self.query(&pipe).await?;
        Ok(())
    }
}
