//! Sinks: threads fed by one SPSC ring per (shard, sink).
//!
//! What crosses a ring is an [`OutBatch`]: rows in the compact row format
//! ([`row`]), owning its bytes, plus the schema and generation that made
//! them. Each (shard, sink) pair has a fixed pool of `OutBatch`es that
//! circulates through two `rtrb` rings — full ones to the sink thread, empty
//! ones back — so the worker never allocates or frees one after startup
//! (the Aeron/LMAX pattern). A port also bounds the records in flight to
//! `ring_capacity`; when either bound is reached the sink's `on_full`
//! decides: `block` waits (the worker stops reading its sockets, so TCP
//! flow control slows the senders), `drop` counts and drops.

pub mod json;
pub mod row;
pub mod tap;

use crate::config::{OnFull, SinkDef, SinkKind};
use crate::journal::writer::PartitionWriter;
use crate::metrics::{Metrics, SinkShardCounters};
use crate::pipeline::exec::{Emit, Rows};
use crate::pipeline::program::{EmitSpec, OutSchema};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Records for one sink from one shard, in the row format.
#[derive(Debug, Default)]
pub struct OutBatch {
    /// The schema of the rows; the sink thread takes it (drops the `Arc`)
    /// before returning the batch.
    pub schema: Option<Arc<OutSchema>>,
    pub generation: u64,
    pub shard: u16,
    pub count: u32,
    /// When the first byte of the input batch left the socket.
    pub ingest_ns: u64,
    pub bytes: Vec<u8>,
}

/// Flags shared by workers, sink threads and the control thread.
#[derive(Debug, Default)]
pub struct Lifecycle {
    /// Workers: stop reading sockets and drain.
    pub stop: AtomicBool,
    /// Every worker has drained and will emit nothing more.
    pub workers_done: AtomicBool,
    /// The shutdown deadline passed: blocked workers drop instead of
    /// waiting for a sink that does not drain.
    pub abandon: AtomicBool,
}

/// A worker's end of one (shard, sink) pair.
pub struct SinkPort {
    tx: rtrb::Producer<OutBatch>,
    back: rtrb::Consumer<OutBatch>,
    free: Vec<OutBatch>,
    scratch: row::Scratch,
    in_flight: usize,
    capacity: usize,
    on_full: OnFull,
    /// A blackhole: count the records, encode and send nothing.
    counts_only: bool,
    /// Batches to allocate in [`SinkPort::prepare`].
    pool: usize,
    batch_bytes: usize,
    /// A journal: this shard's partition, appended to right here.
    journal: Option<Box<PartitionWriter>>,
    /// Rows encoded for the journal, copied into the map from here.
    rows: Vec<u8>,
}

impl SinkPort {
    /// A port written on the worker itself (a blackhole or a journal): no
    /// ring and no pool, so its rings are placeholders of one slot.
    fn direct(def: &SinkDef, ring_capacity: usize, batch_max: usize) -> SinkPort {
        let (tx, _) = rtrb::RingBuffer::new(1);
        let (_, back) = rtrb::RingBuffer::new(1);
        SinkPort {
            tx,
            back,
            free: Vec::new(),
            scratch: row::Scratch::with_rows(batch_max),
            in_flight: 0,
            capacity: ring_capacity,
            on_full: def.on_full,
            counts_only: false,
            pool: 0,
            batch_bytes: 0,
            journal: None,
            rows: Vec::new(),
        }
    }

    /// Allocates the port's pool of batches. Called on the worker thread,
    /// so the memory comes from the worker's own allocator arena: growing a
    /// batch later never takes a lock another thread holds.
    pub fn prepare(&mut self) {
        if self.journal.is_some() {
            self.rows.reserve(self.batch_bytes);
        }
        while self.free.len() < self.pool {
            self.free.push(OutBatch {
                bytes: Vec::with_capacity(self.batch_bytes),
                ..Default::default()
            });
        }
    }

    /// A batch outgrew the pool's size: grows every batch to it now (the
    /// free ones here, the ones with the sink thread when they come back),
    /// so the pool reaches its working size at the first wide batch and
    /// the worker does not allocate again for the next one that happens
    /// to take a smaller buffer. Rows wider than ever before are the only
    /// cause of allocation on this path.
    #[cold]
    #[inline(never)]
    fn grow_pool(&mut self, bytes: usize) {
        self.batch_bytes = bytes;
        for f in &mut self.free {
            f.bytes.reserve_exact(bytes);
        }
    }

    /// Takes back the batches the sink thread has finished with.
    fn reclaim(&mut self) {
        while let Ok(mut b) = self.back.pop() {
            debug_assert!(b.schema.is_none(), "the sink thread drops the schema");
            self.in_flight -= b.count as usize;
            b.count = 0;
            b.bytes.clear();
            if b.bytes.capacity() < self.batch_bytes {
                b.bytes.reserve_exact(self.batch_bytes);
            }
            self.free.push(b);
        }
    }

    /// Whether `n` more records fit now.
    fn has_room(&mut self, n: usize) -> bool {
        if self.free.is_empty() || self.in_flight + n > self.capacity {
            self.reclaim();
        }
        !self.free.is_empty() && self.in_flight + n <= self.capacity
    }

    /// Encodes and sends the selected rows; returns false if they were
    /// dropped.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        spec: &EmitSpec,
        rows: &Rows<'_>,
        generation: u64,
        shard: u16,
        ingest_ns: u64,
        counters: &SinkShardCounters,
        life: &Lifecycle,
    ) {
        let n = rows.sel.len();
        if self.counts_only {
            counters.emitted.add(n as u64);
            return;
        }
        if self.journal.is_some() {
            self.append(spec, rows, generation, ingest_ns, counters, life);
            return;
        }
        debug_assert!(n > 0 && n <= self.capacity);
        if !self.has_room(n) && !self.wait_for_room(n, counters, life) {
            return;
        }
        let mut b = self.free.pop().expect("has_room checked a free batch");
        b.schema = Some(spec.schema.clone());
        b.generation = generation;
        b.shard = shard;
        b.ingest_ns = ingest_ns;
        b.count = row::encode(spec, rows, &mut b.bytes, &mut self.scratch);
        if b.bytes.capacity() > self.batch_bytes {
            self.grow_pool(b.bytes.capacity());
        }
        self.in_flight += b.count as usize;
        counters.emitted.add(b.count as u64);
        counters.ring_records.set(self.in_flight as u64);
        if self.tx.push(b).is_err() {
            unreachable!("the ring holds the whole pool");
        }
    }

    /// Appends to this shard's journal partition; with no segment to roll
    /// to (a full disk), applies `on_full`.
    fn append(
        &mut self,
        spec: &EmitSpec,
        rows: &Rows<'_>,
        generation: u64,
        ingest_ns: u64,
        counters: &SinkShardCounters,
        life: &Lifecycle,
    ) {
        let j = self.journal.as_mut().expect("checked by the caller");
        self.rows.clear();
        let n = row::encode(spec, rows, &mut self.rows, &mut self.scratch);
        let mut at = 0usize;
        let mut left = n;
        let mut waited = None;
        loop {
            let commit_ns = crate::sys::now_ns();
            match j.append(
                &spec.schema,
                generation,
                ingest_ns,
                commit_ns,
                &self.rows[at..],
                left,
            ) {
                Ok(()) => break,
                Err(ns) => {
                    at += ns.done_bytes;
                    left -= ns.done;
                    counters.emitted.add(ns.done as u64);
                    if self.on_full == OnFull::Drop {
                        counters.dropped_disk_full.add(left as u64);
                        left = 0;
                        break;
                    }
                    if life.abandon.load(Ordering::Relaxed) {
                        counters.dropped_shutdown.add(left as u64);
                        left = 0;
                        break;
                    }
                    // Block: stop reading the sockets until the journal
                    // thread has a segment again. Off the per-record path.
                    waited.get_or_insert_with(crate::sys::mono_ns);
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        if let Some(t0) = waited {
            counters.blocked_ns.add(crate::sys::mono_ns() - t0);
        }
        counters.emitted.add(left as u64);
        let s = j.stats;
        counters.journal_frames.set(s.frames);
        counters.journal_bytes.set(s.bytes);
        counters.journal_rolls.set(s.rolls);
        counters.dropped_too_large.set(s.too_large);
        counters.sync_errors.set(s.sync_errors);
    }

    /// Applies `on_full`; true when room was found.
    #[cold]
    #[inline(never)]
    fn wait_for_room(&mut self, n: usize, counters: &SinkShardCounters, life: &Lifecycle) -> bool {
        if self.on_full == OnFull::Drop {
            counters.dropped_full.add(n as u64);
            return false;
        }
        // Block: the worker stops here, so it stops reaping receives; the
        // kernel fills the provided buffers, then stops reading the sockets.
        let t0 = crate::sys::mono_ns();
        let mut spins = 0u32;
        loop {
            if self.has_room(n) {
                counters.blocked_ns.add(crate::sys::mono_ns() - t0);
                return true;
            }
            if life.abandon.load(Ordering::Relaxed) {
                counters.dropped_shutdown.add(n as u64);
                return false;
            }
            spins += 1;
            if spins < 1000 {
                std::hint::spin_loop();
            } else {
                // NB: blocked on a slow sink, off the per-record path: sleep
                // in small steps rather than burn the core.
                std::thread::sleep(Duration::from_micros(20));
            }
        }
    }
}

/// A shard's ports, one per sink, as the chain's [`Emit`] target.
pub struct Emitter<'a> {
    pub ports: &'a mut [SinkPort],
    pub generation: u64,
    pub shard: u16,
    pub ingest_ns: u64,
    pub counters: &'a [SinkShardCounters],
    pub life: &'a Lifecycle,
    pub tap: Option<&'a mut tap::TapPort>,
    /// Wall-clock ns of this batch (the tap's interval clock).
    pub now_ns: u64,
}

impl Emit for Emitter<'_> {
    #[inline]
    fn tap(&mut self, spec: &EmitSpec, rows: &Rows<'_>) {
        if let Some(t) = self.tap.as_deref_mut() {
            t.copy(spec, rows, self.generation, self.now_ns);
        }
    }

    #[inline]
    fn emit(&mut self, spec: &EmitSpec, rows: &Rows<'_>) {
        self.ports[spec.sink].send(
            spec,
            rows,
            self.generation,
            self.shard,
            self.ingest_ns,
            &self.counters[spec.sink],
            self.life,
        );
    }
}

/// A sink thread's end of one (shard, sink) pair.
struct SinkInput {
    rx: rtrb::Consumer<OutBatch>,
    back: rtrb::Producer<OutBatch>,
}

/// Where a sink writes.
enum Writer {
    File(std::io::BufWriter<std::fs::File>),
    Stdout(std::io::BufWriter<std::io::Stdout>),
}

impl Writer {
    fn open(def: &SinkDef) -> std::io::Result<Writer> {
        Ok(match def.kind {
            SinkKind::File => {
                let path = def.path.as_ref().expect("file sinks have a path (config)");
                if let Some(dir) = path.parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir)?;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                Writer::File(std::io::BufWriter::with_capacity(1 << 20, f))
            }
            SinkKind::Stdout => Writer::Stdout(std::io::BufWriter::with_capacity(
                1 << 16,
                std::io::stdout(),
            )),
            k => {
                return Err(std::io::Error::other(format!(
                    "sink kind {:?} is not yet supported in this version",
                    k.name()
                )));
            }
        })
    }

    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Writer::File(w) => w.write_all(b),
            Writer::Stdout(w) => w.write_all(b),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Writer::File(w) => w.flush(),
            Writer::Stdout(w) => w.flush(),
        }
    }
}

/// Worker ports (`[shard][sink]`) and sink thread handles.
pub type Started = (Vec<Vec<SinkPort>>, Vec<std::thread::JoinHandle<()>>);

/// Why sinks could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Open(std::io::Error),
    /// A journal that cannot be opened (exit code 74).
    #[error("{0}")]
    Journal(#[from] crate::journal::OpenError),
}

/// How much each (shard, sink) pair holds.
#[derive(Clone, Copy, Debug)]
pub struct Sizes<'a> {
    /// Records in flight per pair (`[runtime] ring_capacity`).
    pub ring_capacity: usize,
    /// Records per batch (`[runtime] batch_max`).
    pub batch_max: usize,
    /// Per sink: bytes of its widest encoded row, as the first generation
    /// emits it (batches are allocated for `batch_max` of them).
    pub row_bytes: &'a [usize],
}

/// Creates the rings and pools for every (shard, sink) pair, opens the
/// sinks and starts one thread per file or stdout sink; journals get
/// their partition writers on the workers' ports and one journal thread
/// for all of them. Returns the worker ports (`ports[shard][sink]`) and
/// the thread handles.
///
/// # Errors
/// A sink that cannot be opened (e.g. its directory is not writable), a
/// journal that is locked or cannot be recovered.
pub fn start(
    defs: &[SinkDef],
    shards: usize,
    housekeeping: &[core_affinity::CoreId],
    sizes: Sizes<'_>,
    metrics: &Arc<Metrics>,
    life: &Arc<Lifecycle>,
) -> Result<Started, StartError> {
    let Sizes {
        ring_capacity,
        batch_max,
        row_bytes,
    } = sizes;
    // Enough batches to hold ring_capacity records in full batches, twice
    // over, so small batches (low rates) do not fill the ring early.
    let pool = (2 * ring_capacity.div_ceil(batch_max)).clamp(8, 4096);
    let mut ports: Vec<Vec<SinkPort>> = (0..shards).map(|_| Vec::new()).collect();
    let mut threads = Vec::new();
    let mut writers = Vec::new();
    let mut journals = Vec::new();
    let mut partitions = Vec::new();
    for (si, def) in defs.iter().enumerate() {
        if def.kind == SinkKind::Journal {
            let (w, svc, recs) = crate::journal::open(def, shards)?;
            for (k, r) in recs.iter().enumerate() {
                log_recovery(&def.name, k, r);
            }
            journals.push((svc, si));
            partitions.push(Some(w));
            writers.push(None);
            continue;
        }
        partitions.push(None);
        if def.kind == SinkKind::Blackhole {
            writers.push(None);
            continue;
        }
        let w = Writer::open(def)
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "sink {:?}: cannot open {}: {e}",
                        def.name,
                        def.path
                            .as_ref()
                            .map_or("stdout".into(), |p| p.display().to_string())
                    ),
                )
            })
            .map_err(StartError::Open)?;
        writers.push(Some(w));
    }
    for (si, ((def, writer), parts)) in defs.iter().zip(writers).zip(partitions).enumerate() {
        if let Some(parts) = parts {
            // A journal: each worker appends to its own partition.
            for (port_list, w) in ports.iter_mut().zip(parts) {
                let mut p = SinkPort::direct(def, ring_capacity, batch_max);
                p.batch_bytes = batch_max * row_bytes[si].max(64);
                p.journal = Some(Box::new(w));
                port_list.push(p);
            }
            continue;
        }
        let Some(writer) = writer else {
            // A blackhole counts on the worker: no ring, no thread.
            for port_list in ports.iter_mut() {
                let mut p = SinkPort::direct(def, ring_capacity, batch_max);
                p.counts_only = true;
                port_list.push(p);
            }
            continue;
        };
        let mut inputs = Vec::new();
        for port_list in ports.iter_mut() {
            let (tx, rx) = rtrb::RingBuffer::new(pool);
            let (back_tx, back_rx) = rtrb::RingBuffer::new(pool);
            port_list.push(SinkPort {
                tx,
                back: back_rx,
                free: Vec::with_capacity(pool),
                scratch: row::Scratch::with_rows(batch_max),
                in_flight: 0,
                capacity: ring_capacity,
                on_full: def.on_full,
                counts_only: false,
                pool,
                batch_bytes: batch_max * row_bytes[si].max(64),
                journal: None,
                rows: Vec::new(),
            });
            inputs.push(SinkInput { rx, back: back_tx });
        }
        let metrics = metrics.clone();
        let life = life.clone();
        let name = def.name.clone();
        // Off the workers' cores, where there are others to use.
        let core = (!housekeeping.is_empty()).then(|| housekeeping[si % housekeeping.len()]);
        let t = std::thread::Builder::new()
            .name(format!("mutstream-sink-{si}"))
            .spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(c);
                }
                run_sink(&name, si, inputs, writer, &metrics, &life)
            })
            .map_err(StartError::Open)?;
        threads.push(t);
    }
    if !journals.is_empty() {
        let metrics = metrics.clone();
        let life = life.clone();
        let core = housekeeping.last().copied();
        let t = std::thread::Builder::new()
            .name("mutstream-journal".into())
            .spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(c);
                }
                crate::journal::run_service(journals, &metrics, &life)
            })
            .map_err(StartError::Open)?;
        threads.push(t);
    }
    Ok((ports, threads))
}

/// One line per partition that recovery had to touch; a debug line
/// otherwise.
fn log_recovery(sink: &str, shard: usize, r: &crate::journal::writer::Recovery) {
    for (from, to, why) in &r.renamed_aside {
        tracing::error!(
            sink,
            shard,
            "segment {} cannot be used ({why}); moved aside to {}",
            from.display(),
            to.display()
        );
    }
    if let Some((seg, off, why)) = &r.corrupt {
        tracing::warn!(
            sink,
            shard,
            "recovery: frame at {}:{off} is not valid ({why}); the journal continues after the last valid frame at sequence {}",
            seg.display(),
            r.next_seq
        );
    }
    if r.cut_bytes > 0 {
        tracing::warn!(
            sink,
            shard,
            "recovery: zeroed {} bytes of torn tail",
            r.cut_bytes
        );
    }
    tracing::debug!(
        sink,
        shard,
        "journal opened in {:.1} ms: {} segments, next sequence {}",
        r.elapsed_ns as f64 / 1e6,
        r.segments,
        r.next_seq
    );
}

fn run_sink(
    name: &str,
    si: usize,
    mut inputs: Vec<SinkInput>,
    mut w: Writer,
    metrics: &Metrics,
    life: &Lifecycle,
) {
    crate::sys::block_control_signals();
    let c = &metrics.sinks[si];
    c.tid.store(crate::sys::gettid(), Ordering::Relaxed);
    let mut line = Vec::with_capacity(1 << 16);
    let mut idle_rounds = 0u32;
    let mut last_error_log = 0u64;
    loop {
        // Read before draining: if workers were done before this drain
        // began, an empty drain means nothing more will come.
        let done = life.workers_done.load(Ordering::Acquire);
        let mut did = 0usize;
        for inp in &mut inputs {
            while let Ok(mut b) = inp.rx.pop() {
                did += 1;
                let schema = b.schema.take().expect("workers set the schema");
                line.clear();
                for r in row::RowIter::new(&b.bytes, &schema) {
                    json::write_record(&mut line, &schema, &r, b.generation);
                }
                match w.write_all(&line) {
                    Ok(()) => {
                        c.records.add(b.count as u64);
                        c.bytes.add(line.len() as u64);
                        c.batches.add(1);
                    }
                    Err(e) => {
                        c.write_errors.add(1);
                        c.dropped_error.add(b.count as u64);
                        let now = crate::sys::mono_ns();
                        if now - last_error_log > 10_000_000_000 {
                            last_error_log = now;
                            tracing::error!(sink = name, "write failed, records dropped: {e}");
                        }
                    }
                }
                drop(schema);
                if inp.back.push(b).is_err() {
                    unreachable!("the return ring holds the whole pool");
                }
            }
        }
        if did > 0 {
            idle_rounds = 0;
            continue;
        }
        if let Err(e) = w.flush() {
            c.write_errors.add(1);
            let now = crate::sys::mono_ns();
            if now - last_error_log > 10_000_000_000 {
                last_error_log = now;
                tracing::error!(sink = name, "flush failed: {e}");
            }
        }
        if done {
            break;
        }
        idle_rounds = idle_rounds.saturating_add(1);
        // Back off to at most 1 ms between polls of an idle ring.
        let us = (idle_rounds as u64 * 20).min(1000);
        std::thread::sleep(Duration::from_micros(us));
    }
    let _ = w.flush();
}

#[cfg(test)]
mod tests;
