//! Follows the demo's journals the way `mutstream read --follow` does and
//! measures what arrived: rows per journal (raw ticks apart from window
//! rows) and latency, end to end (`commit_ns − ts`, `ts` being the intended
//! send time) and inside the appliance (`commit_ns − ingest_ns`), overall,
//! over the last screen refresh, and per generation.

use crate::codec::FieldType;
use crate::journal::segment::list_partitions;
use crate::journal::tailer::{StartAt, Tailer};
use crate::sink::row::{RowIter, RowValue};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// ns histograms, 1 ns to 1 h at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds")
}

/// Rows found in one journal.
#[derive(Clone, Debug, Default)]
pub struct JournalRows {
    pub name: String,
    /// Raw ticks (rows with `seq`): input records that reached the journal.
    pub records: u64,
    /// Rows made by windows (aggregates, not input records).
    pub window_rows: u64,
}

/// Everything measured so far.
pub struct Seen {
    pub journals: Vec<JournalRows>,
    pub e2e: Histogram<u64>,
    pub inside: Histogram<u64>,
    /// Since the last [`Seen::take_recent`].
    pub e2e_recent: Histogram<u64>,
    pub inside_recent: Histogram<u64>,
    /// End to end, by the generation that produced the row.
    pub by_gen: BTreeMap<u64, Histogram<u64>>,
    /// Gaps and corrupt frames the tailers reported (never expected).
    pub events: Vec<String>,
}

impl Seen {
    fn new(names: &[String]) -> Seen {
        Seen {
            journals: names
                .iter()
                .map(|n| JournalRows {
                    name: n.clone(),
                    ..JournalRows::default()
                })
                .collect(),
            e2e: histogram(),
            inside: histogram(),
            e2e_recent: histogram(),
            inside_recent: histogram(),
            by_gen: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// The recent histograms, reset for the next interval.
    pub fn take_recent(&mut self) -> (Histogram<u64>, Histogram<u64>) {
        let e = self.e2e_recent.clone();
        let i = self.inside_recent.clone();
        self.e2e_recent.reset();
        self.inside_recent.reset();
        (e, i)
    }
}

/// The running tail: shared counts and the thread.
pub struct Tail {
    pub seen: Arc<Mutex<Seen>>,
    finish: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Tail {
    /// Follows journals `(name, dir)`.
    pub fn start(journals: Vec<(String, PathBuf)>) -> std::io::Result<Tail> {
        let names: Vec<String> = journals.iter().map(|j| j.0.clone()).collect();
        let seen = Arc::new(Mutex::new(Seen::new(&names)));
        let finish = Arc::new(AtomicBool::new(false));
        let (s, f) = (seen.clone(), finish.clone());
        let thread = std::thread::Builder::new()
            .name("demo-tail".into())
            .spawn(move || follow(&journals, &s, &f))?;
        Ok(Tail {
            seen,
            finish,
            thread: Some(thread),
        })
    }

    /// Reads what is left (the appliance has stopped and flushed) and
    /// stops.
    pub fn finish(mut self) -> Arc<Mutex<Seen>> {
        self.finish.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen.clone()
    }
}

fn follow(journals: &[(String, PathBuf)], seen: &Mutex<Seen>, finish: &AtomicBool) {
    // Per journal: the partitions found so far, by shard.
    let mut tailers: Vec<BTreeMap<u32, Tailer>> =
        journals.iter().map(|_| BTreeMap::new()).collect();
    loop {
        // Read after the flag: a pass begun after the appliance stopped
        // sees everything it wrote.
        let last = finish.load(Ordering::Acquire);
        for (j, (_, dir)) in journals.iter().enumerate() {
            if let Ok(parts) = list_partitions(dir) {
                for (shard, p) in parts {
                    if let std::collections::btree_map::Entry::Vacant(v) = tailers[j].entry(shard)
                        && let Ok(t) = Tailer::open(&p, StartAt::Oldest)
                    {
                        v.insert(t);
                    }
                }
            }
        }
        let now = crate::sys::now_ns();
        let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
        for (j, parts) in tailers.iter_mut().enumerate() {
            for t in parts.values_mut() {
                while let Some(f) = t.next_frame() {
                    let fields = &f.schema.fields;
                    let ts = fields
                        .iter()
                        .position(|(n, ty)| n == "ts" && *ty == FieldType::Timestamp);
                    let raw = fields.iter().any(|(n, _)| n == "seq");
                    let n = (f.header.count - f.skip) as u64;
                    let (Some(k), true) = (ts, raw) else {
                        s.journals[j].window_rows += n;
                        continue;
                    };
                    s.journals[j].records += n;
                    let inside = f.header.commit_ns.saturating_sub(f.header.ingest_ns);
                    let _ = s.inside.record_n(inside.max(1), n);
                    let _ = s.inside_recent.record_n(inside.max(1), n);
                    let generation = f.header.generation;
                    for r in RowIter::new(f.rows, f.schema).skip(f.skip as usize) {
                        let RowValue::Ts(ts) = r.get(k, FieldType::Timestamp) else {
                            continue;
                        };
                        let lat = (f.header.commit_ns as i64 - ts).max(1) as u64;
                        s.e2e.saturating_record(lat);
                        s.e2e_recent.saturating_record(lat);
                        s.by_gen
                            .entry(generation)
                            .or_insert_with(histogram)
                            .saturating_record(lat);
                    }
                }
                for e in t.take_events() {
                    s.events.push(e.to_string());
                }
            }
        }
        drop(s);
        if last {
            return;
        }
        // Not behind the screen by more than a refresh.
        let spent = crate::sys::now_ns().saturating_sub(now);
        std::thread::sleep(Duration::from_millis(50).saturating_sub(Duration::from_nanos(spent)));
    }
}
