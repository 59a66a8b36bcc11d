//! A `tap` session on the control thread: what the shards copied from the
//! tapped stage, as JSON records, held until the client reads them.
//!
//! The shards each keep to `limit` rows per interval; the session keeps
//! to `limit` over all shards, and holds at most [`HELD_MAX`] records
//! between reads (a slow reader loses the newest, counted). A session not
//! read for [`IDLE`] ends, and the shards stop copying.

use crate::sink::json::write_record_meta;
use crate::sink::row::RowIter;
use crate::sink::tap::TapBatch;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Records held for a reader, at most.
pub const HELD_MAX: usize = 10_000;
/// A session unread this long ends.
pub const IDLE: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct TapSession {
    pub id: u64,
    pub stage: String,
    pub limit: u32,
    pub interval: Duration,
    last_read: Instant,
    window: Instant,
    taken: u32,
    held: Vec<Value>,
    /// Records past the limit or the hold, or that the shards had no
    /// buffer for, since the last read.
    dropped: u64,
    /// The shards' own drop count when last looked at.
    shard_dropped: Option<u64>,
    line: Vec<u8>,
}

impl TapSession {
    pub fn new(id: u64, stage: &str, limit: u32, interval: Duration) -> TapSession {
        TapSession {
            id,
            stage: stage.to_string(),
            limit,
            interval,
            last_read: Instant::now(),
            window: Instant::now(),
            taken: 0,
            held: Vec::new(),
            dropped: 0,
            shard_dropped: None,
            line: Vec::new(),
        }
    }

    /// Takes the rows of one tapped batch.
    pub fn take(&mut self, b: &TapBatch) {
        if self.window.elapsed() >= self.interval {
            self.window = Instant::now();
            self.taken = 0;
        }
        for row in RowIter::new(&b.bytes, &b.schema).take(b.rows as usize) {
            if self.taken >= self.limit || self.held.len() >= HELD_MAX {
                self.dropped += 1;
                continue;
            }
            self.line.clear();
            write_record_meta(
                &mut self.line,
                &b.schema,
                &row,
                &[("_gen", b.generation), ("_shard", b.shard as u64)],
            );
            match serde_json::from_slice(&self.line) {
                Ok(v) => {
                    self.held.push(v);
                    self.taken += 1;
                }
                Err(_) => self.dropped += 1,
            }
        }
    }

    /// Adds what the shards dropped since the last look (`total`: their
    /// count since start; the first look sets the baseline).
    pub fn shard_drops(&mut self, total: u64) {
        if let Some(before) = self.shard_dropped {
            self.dropped += total.saturating_sub(before);
        }
        self.shard_dropped = Some(total);
    }

    /// The held records, handed over, and the count dropped since the
    /// last read.
    pub fn read(&mut self) -> (Vec<Value>, u64) {
        self.last_read = Instant::now();
        (
            std::mem::take(&mut self.held),
            std::mem::take(&mut self.dropped),
        )
    }

    pub fn idle(&self) -> bool {
        self.last_read.elapsed() >= IDLE
    }
}
