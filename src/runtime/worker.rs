//! The shard worker: one pinned thread, one io_uring, its sockets, batches,
//! chain state and sink ports.
//!
//! Loop: enter the kernel (submit, run completions; park if idle), reap
//! completions, frame and decode each receive straight out of its provided
//! buffer into the schema's batch, give the buffer back, and run the chain
//! on each non-empty batch (also whenever one fills). The generation is
//! checked before each batch runs, so every batch is processed by exactly
//! one generation.
//!
//! Receives are handled in steps of at most `STEP_BYTES` or
//! `STEP_CQES`, each followed by giving the buffers back and entering the
//! kernel again. With `DEFER_TASKRUN` the kernel copies socket data into
//! provided buffers inside `io_uring_enter`, into as many as are free:
//! handing back all 256 buffers at once made one enter copy 16 MiB (3 ms
//! under W4), a stretch in which the worker cannot pick up a generation.
//! A receive that ran out of buffers is re-armed at the end of the step
//! in which its completion is reaped, not after the data before it, so
//! each enter refills about one step's worth.
//!
//! Hot-path rules: no allocation, lock, blocking syscall or log line per
//! record; counters are single-writer; the only syscall is
//! `io_uring_enter`.

use super::bufring::BufRing;
use super::ring::{CONTROL_LEN, Kind, Ring, Tag, is_final};
use crate::codec::frame::{self, Event, LineScan, Status, StreamFramer, StreamKind};
use crate::codec::{Batch, DecodeCx, Decoder, Format, Framing, Interner, Reason, Reject, Schema};
use crate::config::{Idle, Transport};
use crate::metrics::latency::LatencyPort;
use crate::metrics::{ShardMetrics, SourceCounters};
use crate::pipeline::exec::Exec;
use crate::pipeline::generation::Reader;
use crate::pipeline::program::Chain;
use crate::sink::tap::{TapCtl, TapPort};
use crate::sink::{Emitter, Lifecycle, SinkPort};
use io_uring::cqueue;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What a generation holds: one compiled chain per schema index.
pub struct GenValue {
    pub chains: Vec<Option<Arc<Chain>>>,
}

/// A shard's working memory for a generation: one `Exec` per chain.
pub struct ShardExec {
    pub execs: Vec<Option<Exec>>,
}

impl ShardExec {
    /// Working memory for every chain of `g`.
    pub fn for_generation(g: &GenValue, batch_max: usize, max_state_keys: u64) -> ShardExec {
        ShardExec {
            execs: g
                .chains
                .iter()
                .map(|c| {
                    c.as_ref()
                        .map(|c| Exec::with_limits(c, batch_max, max_state_keys))
                })
                .collect(),
        }
    }
}

pub type GenReader = Reader<GenValue, ShardExec>;

/// A source as a worker runs it.
pub struct SourceRt {
    pub name: String,
    pub transport: Transport,
    pub framing: Framing,
    pub format: Format,
    pub schema: usize,
    pub record_size: usize,
    pub max_frame: usize,
    pub max_connections: u32,
    pub idle_timeout_ns: Option<u64>,
    pub decoder: Decoder,
    /// Open connections on this shard.
    pub conns: u32,
}

impl SourceRt {
    fn stream_kind(&self) -> StreamKind {
        match self.framing {
            Framing::Newline => StreamKind::Newline(LineScan::for_format(self.format)),
            Framing::Fixed => StreamKind::Fixed {
                size: self.record_size,
            },
            Framing::Len16Be => StreamKind::Len16Be {
                size: self.record_size,
            },
            Framing::Len32Le => StreamKind::Len32Le {
                size: self.record_size,
            },
            Framing::Datagram => unreachable!("datagram framing is UDP only (config)"),
        }
    }
}

/// Everything a worker needs, assembled by the appliance.
pub struct WorkerSetup {
    pub shard: usize,
    pub core: Option<core_affinity::CoreId>,
    /// (source index, socket) pairs bound for this shard.
    pub sockets: Vec<(usize, OwnedFd)>,
    pub sources: Vec<SourceRt>,
    pub schemas: Vec<Arc<Schema>>,
    pub reader: GenReader,
    pub ports: Vec<SinkPort>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub life: Arc<Lifecycle>,
    pub wake_fd: RawFd,
    pub batch_max: usize,
    pub idle: Idle,
    pub max_symbols: u32,
    pub recv_buffers: u32,
    pub recv_buffer_size: u32,
    pub tap: TapPort,
    pub tap_ctl: Arc<TapCtl>,
    pub lat: LatencyPort,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    /// A multishot receive is armed.
    Reading,
    /// The receive ended for lack of buffers; re-arm after recycling.
    NeedsRearm,
    /// A cancel was sent (idle timeout or shutdown).
    Cancelling,
    Free,
}

struct Conn {
    fd: RawFd,
    source: usize,
    gen_id: u32,
    framer: StreamFramer,
    last_ns: u64,
    state: ConnState,
    timed_out: bool,
    /// The stream cannot be resynchronised (a bad length prefix): bytes
    /// still arriving before the cancel completes are discarded.
    poisoned: bool,
}

struct Listener {
    fd: OwnedFd,
    source: usize,
    armed: bool,
    /// Accepting failed; re-arm on the next tick.
    retry: bool,
}

struct UdpSock {
    fd: OwnedFd,
    source: usize,
    hdr: usize,
    armed: bool,
    needs_rearm: bool,
    /// Last cumulative SO_RXQ_OVFL value seen.
    ovfl: u32,
}

/// Batches, chain state and sink ports: everything decoding feeds.
struct Engine {
    shard: usize,
    batches: Vec<Option<Batch>>,
    /// Per schema with a `ts` field: the other half of a batch split at a
    /// timed switch (`apply --at`), allocated up front.
    spares: Vec<Option<Batch>>,
    schemas: Vec<Arc<Schema>>,
    symbols: Interner,
    reader: GenReader,
    ports: Vec<SinkPort>,
    metrics: Arc<crate::metrics::Metrics>,
    life: Arc<Lifecycle>,
    last_sample_ns: u64,
    tap: TapPort,
    tap_ctl: Arc<TapCtl>,
    /// The tap request the current generation's execs follow; `u64::MAX`
    /// after a switch (the new execs start untapped).
    tap_seq: u64,
    /// Per stage of the current generation: what the stage of the same
    /// name counted in earlier generations (in, out).
    stage_base: Box<[(u64, u64)]>,
    lat: LatencyPort,
}

impl Engine {
    fn m(&self) -> &ShardMetrics {
        &self.metrics.shards[self.shard]
    }

    /// Moves to the latest generation if one was published (or arms it,
    /// when it switches at an event time). Between batches only.
    #[inline]
    fn check_generation(&mut self) {
        if self.reader.changed() {
            self.on_published();
        }
    }

    #[cold]
    #[inline(never)]
    fn on_published(&mut self) {
        if self.reader.observe().is_none() {
            self.switch_generation();
        }
    }

    /// Moves to the generation last seen (the latest, or an armed one whose
    /// time has come).
    #[cold]
    #[inline(never)]
    fn switch_generation(&mut self) {
        let now_ns = crate::sys::now_ns();
        let Engine {
            shard,
            symbols,
            reader,
            ports,
            metrics,
            life,
            tap,
            stage_base,
            ..
        } = self;
        let m = &metrics.shards[*shard];
        reader.advance_with(|old, old_state, new, new_state| {
            // Before the acknowledgement (a Release store after this
            // closure): the control thread sees it with the ack.
            m.switched_ns.set(crate::sys::mono_ns());
            let Some(os) = old_state.as_mut() else {
                return;
            };
            // State of unchanged stages moves to the new generation (SPEC
            // §5); windows of changed and removed stages close now, tagged
            // with the old one.
            if let Some(ns) = new_state.as_mut() {
                for (s, (oe, ne)) in os.execs.iter_mut().zip(ns.execs.iter_mut()).enumerate() {
                    let (Some(oe), Some(ne)) = (oe.as_mut(), ne.as_mut()) else {
                        continue;
                    };
                    let (Some(oc), Some(nc)) = (
                        old.value.chains[s].as_deref(),
                        new.value.chains.get(s).and_then(|c| c.as_deref()),
                    ) else {
                        continue;
                    };
                    let moved = ne.adopt(nc, oe, oc);
                    m.states_carried.add(moved as u64);
                }
            }
            flush_execs(
                old,
                os,
                *shard,
                ports,
                symbols,
                m,
                life,
                now_ns,
                None,
                Some(&mut *tap),
            );
            carry_stage_counts(old, os, new, stage_base, m);
        });
        let id = reader.current().id;
        m.generation.set(id);
        m.generation_switches.add(1);
        self.tap_seq = u64::MAX;
    }

    /// Follows the tap request: the named stage of each chain of the
    /// current generation (none where a chain has no such stage).
    #[cold]
    #[inline(never)]
    fn retap(&mut self) {
        let Some((seq, want)) = self.tap_ctl.read() else {
            return; // being written: next batch
        };
        self.tap_seq = seq;
        self.tap.want = want;
        let (node, state) = self.reader.parts();
        let Some(state) = state else {
            return;
        };
        for (s, exec) in state.execs.iter_mut().enumerate() {
            let (Some(exec), Some(chain)) = (exec.as_mut(), node.value.chains[s].as_deref()) else {
                continue;
            };
            let k = (!want.stage().is_empty())
                .then(|| {
                    chain
                        .stages
                        .iter()
                        .position(|st| st.name.as_bytes() == want.stage())
                })
                .flatten();
            exec.set_tap(chain, k);
        }
    }

    /// Runs the chain on schema `s`'s batch, if it holds records.
    #[inline]
    fn flush(&mut self, s: usize, now_ns: u64) {
        match self.batches[s].as_mut() {
            None => return,
            Some(b) if b.is_empty() => {
                b.clear();
                return;
            }
            Some(_) => {}
        }
        if self.reader.changed() {
            self.on_published();
        }
        if let Some(at) = self.reader.armed() {
            self.switch_within(s, at, now_ns);
        }
        self.run(s, now_ns);
    }

    /// A generation is armed to switch at event time `at`: if schema `s`'s
    /// batch holds a record at or after `at`, the records before the first
    /// such one run on the current generation and the shard switches, the
    /// rest staying in the batch for the new one (SPEC §5, `--at`).
    #[cold]
    #[inline(never)]
    fn switch_within(&mut self, s: usize, at: i64, now_ns: u64) {
        let Some(ts) = self.schemas[s].ts_index else {
            return;
        };
        let batch = self.batches[s].as_mut().expect("flushed batches exist");
        let crate::codec::ColumnData::I64(col) = &batch.cols[ts].data else {
            unreachable!("timestamps are i64 columns")
        };
        let Some(first) = col[..batch.len()].iter().position(|&t| t >= at) else {
            return;
        };
        if first > 0 {
            let mut tail = self.spares[s].take().expect("a spare per schema with ts");
            batch.split_off_into(first, &mut tail);
            self.run(s, now_ns);
            self.spares[s] = self.batches[s].replace(tail);
        }
        self.switch_generation();
    }

    /// Runs the chain of the current generation on schema `s`'s batch and
    /// empties it.
    #[inline]
    fn run(&mut self, s: usize, now_ns: u64) {
        if self.tap_ctl.seq() != self.tap_seq {
            self.retap();
        }
        let batch = self.batches[s].as_mut().expect("checked by flush");
        let (node, state) = self.reader.parts();
        if let (Some(at), Some(ts)) = (node.switch_at, self.schemas[s].ts_index) {
            late_for_switch(&self.metrics.shards[self.shard], batch, ts, at);
        }
        let chain = node.value.chains[s]
            .as_deref()
            .expect("every source schema has a chain");
        let state = state.expect("a running shard holds working memory");
        let exec = state.execs[s]
            .as_mut()
            .expect("working memory for every chain");
        let m = &self.metrics.shards[self.shard];
        let mut em = Emitter {
            ports: &mut self.ports,
            generation: node.id,
            shard: self.shard as u16,
            ingest_ns: batch.ingest_ns,
            counters: &m.sinks,
            life: &self.life,
            tap: Some(&mut self.tap),
            now_ns,
        };
        let st = exec.run(chain, batch, &mut self.symbols, now_ns as i64, &mut em);
        let done = crate::sys::now_ns();
        self.lat.pipeline(
            node.id,
            batch.len() as u64,
            done.saturating_sub(batch.ingest_ns),
        );
        m.batches.add(1);
        m.chain_in.add(batch.len() as u64);
        add_stats(m, &st);
        publish_stage_counts(state, &self.stage_base, m);
        if self.tap.dropped != m.tap_dropped.get() {
            m.tap_dropped.set(self.tap.dropped);
        }
        batch.clear();
    }

    /// Closes windows of every chain: those idle past `size + lateness`
    /// (`Some(now)`), or all (`None`).
    #[cold]
    fn flush_windows(&mut self, now_ns: u64, idle: Option<u64>) {
        let (node, state) = self.reader.parts();
        let Some(state) = state else {
            return;
        };
        let m = &self.metrics.shards[self.shard];
        flush_execs(
            node,
            state,
            self.shard,
            &mut self.ports,
            &mut self.symbols,
            m,
            &self.life,
            now_ns,
            idle,
            Some(&mut self.tap),
        );
        publish_stage_counts(state, &self.stage_base, m);
    }
}

/// Closes windows of every chain of generation `node` run with working
/// memory `state`: those idle past `size + lateness` (`Some(now)`), or all
/// (`None`). Their records carry `node`'s id.
#[allow(clippy::too_many_arguments)]
fn flush_execs(
    node: &crate::pipeline::generation::Node<GenValue, ShardExec>,
    state: &mut ShardExec,
    shard: usize,
    ports: &mut [SinkPort],
    symbols: &mut Interner,
    m: &ShardMetrics,
    life: &Lifecycle,
    now_ns: u64,
    idle: Option<u64>,
    mut tap: Option<&mut TapPort>,
) {
    for (s, exec) in state.execs.iter_mut().enumerate() {
        let (Some(exec), Some(chain)) = (exec.as_mut(), node.value.chains[s].as_deref()) else {
            continue;
        };
        if !chain.has_windows() || exec.window_groups() == 0 {
            continue;
        }
        let mut em = Emitter {
            ports: &mut *ports,
            generation: node.id,
            shard: shard as u16,
            ingest_ns: now_ns,
            counters: &m.sinks,
            life,
            tap: tap.as_deref_mut(),
            now_ns,
        };
        let st = exec.flush_windows(chain, symbols, now_ns as i64, idle, &mut em);
        add_stats(m, &st);
    }
}

/// Counts records in `batch` before `at`, the switch time of the generation
/// about to run them (SPEC §5: they arrived after the shard switched).
fn late_for_switch(m: &ShardMetrics, batch: &Batch, ts: usize, at: i64) {
    let crate::codec::ColumnData::I64(col) = &batch.cols[ts].data else {
        unreachable!("timestamps are i64 columns")
    };
    let late = col[..batch.len()].iter().filter(|&&t| t < at).count();
    if late > 0 {
        m.late_for_switch.add(late as u64);
    }
}

/// Publishes the per-stage counts of the generation being run: what
/// earlier generations counted under the same stage names, plus this
/// generation's counts over every chain.
#[inline]
fn publish_stage_counts(state: &ShardExec, base: &[(u64, u64)], m: &ShardMetrics) {
    let n = state
        .execs
        .iter()
        .flatten()
        .map(|e| e.counters.stage_in.len())
        .max()
        .unwrap_or(0)
        .min(m.stages.len());
    for (i, (b_in, b_out)) in base.iter().enumerate().take(n) {
        let (mut a, mut b) = (*b_in, *b_out);
        for e in state.execs.iter().flatten() {
            a += e.counters.stage_in.get(i).copied().unwrap_or(0);
            b += e.counters.stage_out.get(i).copied().unwrap_or(0);
        }
        m.stages[i].records_in.set(a);
        m.stages[i].records_out.set(b);
    }
}

/// At a switch from `old` (run with `os`) to `new`: each stage of `new`
/// starts from the total of the old stage of the same name, so a stage a
/// mutation keeps keeps counting. Allocates nothing: the totals are
/// published into the shard's own counters first, then read back.
fn carry_stage_counts(
    old: &crate::pipeline::generation::Node<GenValue, ShardExec>,
    os: &ShardExec,
    new: &crate::pipeline::generation::Node<GenValue, ShardExec>,
    base: &mut [(u64, u64)],
    m: &ShardMetrics,
) {
    publish_stage_counts(os, base, m);
    let (Some(oc), Some(nc)) = (
        old.value.chains.iter().flatten().next(),
        new.value.chains.iter().flatten().next(),
    ) else {
        return;
    };
    let n_old = oc.stages.len().min(m.stages.len());
    for (i, st) in nc.stages.iter().enumerate().take(base.len()) {
        base[i] = match oc.stages[..n_old].iter().position(|o| o.name == st.name) {
            Some(j) => (m.stages[j].records_in.get(), m.stages[j].records_out.get()),
            None => (0, 0),
        };
    }
    for (i, (a, b)) in base.iter().enumerate().take(nc.stages.len()) {
        m.stages[i].records_in.set(*a);
        m.stages[i].records_out.set(*b);
    }
}

/// The shard's counters of one run.
#[inline]
fn add_stats(m: &ShardMetrics, st: &crate::pipeline::exec::RunStats) {
    for (c, v) in [
        (&m.filtered, st.filtered),
        (&m.windowed, st.windowed),
        (&m.late, st.late),
        (&m.state_full, st.state_full),
        (&m.overflow, st.overflow),
        (&m.div_zero, st.div_zero),
    ] {
        if v > 0 {
            c.add(v);
        }
    }
}

impl Engine {
    fn flush_all(&mut self, now_ns: u64) {
        for s in 0..self.batches.len() {
            self.flush(s, now_ns);
        }
    }

    /// Counts a rejected record and samples it (at most one sample per
    /// 10 ms per shard).
    #[cold]
    #[inline(never)]
    fn reject(&mut self, source: usize, r: Reject, bytes: &[u8], now_ns: u64) {
        let m = &self.metrics.shards[self.shard];
        m.sources[source].rejects[r.reason.index()].add(1);
        if now_ns.saturating_sub(self.last_sample_ns) >= 10_000_000 || m.samples.count() < 8 {
            self.last_sample_ns = now_ns;
            m.samples.put(source, r.reason, r.field, bytes, now_ns);
        }
    }
}

/// Decodes framed records of source `src` into the engine.
#[inline]
fn on_event(
    ev: Event<'_>,
    si: usize,
    src: &mut SourceRt,
    eng: &mut Engine,
    now_ns: u64,
    records: &mut u64,
    ts_def: &mut u64,
) {
    let s = src.schema;
    match ev {
        Event::Line(line) => {
            if eng.batches[s].as_ref().is_some_and(Batch::is_full) {
                eng.flush(s, now_ns);
            }
            let Engine {
                batches,
                schemas,
                symbols,
                ..
            } = eng;
            let b = batches[s].as_mut().expect("a batch per source schema");
            if b.is_empty() {
                b.ingest_ns = now_ns;
            }
            let before = b.ts_defaulted;
            let mut cx = DecodeCx {
                schema: &schemas[s],
                symbols,
                now_ns,
            };
            match src.decoder.decode_line(line, b, &mut cx) {
                Ok(true) => {
                    *records += 1;
                    *ts_def += (b.ts_defaulted - before) as u64;
                }
                Ok(false) => {}
                Err(r) => eng.reject(si, r, line, now_ns),
            }
        }
        Event::Records(mut run) => {
            let Decoder::Binary(dec) = &src.decoder else {
                unreachable!("binary records come from binary sources")
            };
            let size = dec.size();
            while !run.is_empty() {
                if eng.batches[s].as_ref().is_some_and(Batch::is_full) {
                    eng.flush(s, now_ns);
                }
                let b = eng.batches[s].as_mut().expect("a batch per source schema");
                if b.is_empty() {
                    b.ingest_ns = now_ns;
                }
                let n = dec.decode_run(run, b);
                *records += n as u64;
                run = &run[n * size..];
            }
        }
        Event::Reject(reason) => eng.reject(si, Reject::new(reason), &[], now_ns),
    }
}

/// A running worker.
pub struct Worker {
    ring: Ring,
    tcp_bufs: Option<BufRing>,
    udp_bufs: Option<BufRing>,
    listeners: Vec<Listener>,
    udps: Vec<UdpSock>,
    conns: Vec<Conn>,
    free_conns: Vec<u32>,
    rearm: Vec<u32>,
    sources: Vec<SourceRt>,
    eng: Engine,
    wake_fd: RawFd,
    idle: Idle,
    stopping: bool,
    /// Reaped completions; those before `cqe_pos` are handled.
    cqes: Vec<cqueue::Entry>,
    cqe_pos: usize,
}

/// A step ends once its receives brought this many bytes (the kernel's
/// next `io_uring_enter` refills about as much).
const STEP_BYTES: u64 = 256 << 10;
/// A step ends after this many completions (UDP: one per datagram).
const STEP_CQES: usize = 64;

const BGID_TCP: u16 = 1;
const BGID_UDP: u16 = 2;

/// Why a worker could not run.
#[derive(Debug, thiserror::Error)]
#[error("shard {shard}: {msg}")]
pub struct WorkerError {
    pub shard: usize,
    pub msg: String,
}

impl Worker {
    /// Builds the worker on its own thread (the ring must be created by the
    /// thread that submits to it).
    ///
    /// # Errors
    /// io_uring or buffer-ring setup failures, as one line.
    pub fn new(setup: WorkerSetup) -> Result<Worker, WorkerError> {
        let shard = setup.shard;
        let err = |what: &str, e: std::io::Error| WorkerError {
            shard,
            msg: format!("{what}: {e}"),
        };
        let ring = Ring::new(1024).map_err(|e| {
            err(
                "cannot create an io_uring instance (Linux 6.1+ with io_uring enabled is required)",
                e,
            )
        })?;
        let has_tcp = setup.sources.iter().any(|s| s.transport == Transport::Tcp);
        let udp_payload = setup
            .sources
            .iter()
            .filter(|s| s.transport == Transport::Udp)
            .map(|s| s.max_frame.min(crate::config::limits::DATAGRAM_MAX))
            .max();
        let entries = setup.recv_buffers as u16;
        let tcp_bufs = if has_tcp {
            Some(
                BufRing::new(ring.uring(), BGID_TCP, entries, setup.recv_buffer_size)
                    .map_err(|e| err("cannot register a provided buffer ring (Linux 5.19+)", e))?,
            )
        } else {
            None
        };
        let udp_bufs = match udp_payload {
            Some(p) => {
                // recvmsg_out header + control + payload (+1 to see truncation).
                let size =
                    (std::mem::size_of::<io_uring::types::RecvMsgOut>() + 16 + CONTROL_LEN + p + 1)
                        .next_multiple_of(64) as u32;
                Some(
                    BufRing::new(ring.uring(), BGID_UDP, entries, size).map_err(|e| {
                        err("cannot register a provided buffer ring (Linux 5.19+)", e)
                    })?,
                )
            }
            None => None,
        };
        let mut batches: Vec<Option<Batch>> = (0..setup.schemas.len()).map(|_| None).collect();
        for s in &setup.sources {
            if batches[s.schema].is_none() {
                batches[s.schema] = Some(Batch::new(&setup.schemas[s.schema], setup.batch_max));
            }
        }
        let max_conns = (setup.sources.iter())
            .filter(|s| s.transport == Transport::Tcp)
            .map(|s| s.max_connections as usize)
            .sum::<usize>()
            .min(1 << 16);
        let spares = batches
            .iter()
            .enumerate()
            .map(|(i, b)| {
                b.as_ref()
                    .filter(|_| setup.schemas[i].ts_index.is_some())
                    .map(|_| Batch::new(&setup.schemas[i], setup.batch_max))
            })
            .collect();
        let mut w = Worker {
            ring,
            tcp_bufs,
            udp_bufs,
            listeners: Vec::new(),
            udps: Vec::new(),
            // At size for every connection this shard may hold: accepting
            // and closing never grow them.
            conns: Vec::with_capacity(max_conns),
            free_conns: Vec::with_capacity(max_conns),
            // At most one entry per connection; sized here because when a
            // receive runs out of buffers depends on timing.
            rearm: Vec::with_capacity(max_conns),
            sources: setup.sources,
            eng: Engine {
                shard,
                batches,
                spares,
                schemas: setup.schemas,
                symbols: Interner::new(setup.max_symbols),
                reader: setup.reader,
                ports: setup.ports,
                metrics: setup.metrics,
                life: setup.life,
                last_sample_ns: 0,
                tap: setup.tap,
                tap_ctl: setup.tap_ctl,
                tap_seq: u64::MAX,
                stage_base: vec![(0, 0); crate::metrics::STAGES_MAX].into_boxed_slice(),
                lat: setup.lat,
            },
            wake_fd: setup.wake_fd,
            idle: setup.idle,
            stopping: false,
            cqes: Vec::with_capacity(512),
            cqe_pos: 0,
        };
        for (src, fd) in setup.sockets {
            match w.sources[src].transport {
                Transport::Tcp => w.listeners.push(Listener {
                    fd,
                    source: src,
                    armed: false,
                    retry: false,
                }),
                Transport::Udp => {
                    let hdr = w.ring.new_msghdr();
                    w.udps.push(UdpSock {
                        fd,
                        source: src,
                        hdr,
                        armed: false,
                        needs_rearm: false,
                        ovfl: 0,
                    })
                }
            }
        }
        for p in &mut w.eng.ports {
            p.prepare();
        }
        let m = w.eng.m();
        m.generation.set(w.eng.reader.current().id);
        Ok(w)
    }

    fn arm_all(&mut self) {
        for (i, l) in self.listeners.iter_mut().enumerate() {
            self.ring
                .accept_multi(l.fd.as_raw_fd(), Tag::new(Kind::Accept, i as u32, 0));
            l.armed = true;
        }
        let bgid = self.udp_bufs.as_ref().map(BufRing::bgid);
        for (i, u) in self.udps.iter_mut().enumerate() {
            self.ring.recvmsg_multi(
                u.fd.as_raw_fd(),
                u.hdr,
                bgid.expect("UDP sources have a buffer ring"),
                Tag::new(Kind::Udp, i as u32, 0),
            );
            u.armed = true;
        }
        self.ring
            .read_wake(self.wake_fd, Tag::new(Kind::Wake, 0, 0));
        self.ring.tick(Tag::new(Kind::Tick, 0, 0));
    }

    /// Runs until the lifecycle says stop and every operation has drained.
    ///
    /// # Errors
    /// A failed `io_uring_enter`, or a kernel refusing an operation the
    /// appliance depends on.
    pub fn run(mut self) -> Result<(), WorkerError> {
        self.arm_all();
        let mut last_work = crate::sys::mono_ns();
        loop {
            let backlog = self.cqe_pos < self.cqes.len();
            if !self.stopping && self.eng.life.stop.load(Ordering::Acquire) {
                self.begin_stop();
            }
            if self.stopping && self.ring.in_flight == 0 && !backlog {
                break;
            }
            // Idle moment: pick up a new generation even with no traffic.
            self.eng.check_generation();
            let park = !self.stopping
                && !backlog
                && match self.idle {
                    Idle::Spin => false,
                    Idle::Park => true,
                    Idle::Adaptive => crate::sys::mono_ns() - last_work > 50_000,
                };
            if park {
                // Nothing is coming soon: tapped rows go out now.
                self.eng.tap.flush();
            }
            self.ring.enter(park).map_err(|e| WorkerError {
                shard: self.eng.shard,
                msg: format!("io_uring_enter failed: {e}"),
            })?;
            self.reap()?;
            if self.cqe_pos == self.cqes.len() {
                // What was reaped may all have been receives out of
                // buffers: they are re-armed now, not on the next tick.
                self.rearm();
                continue;
            }
            self.step()?;
            if let Some(b) = self.tcp_bufs.as_mut() {
                b.publish();
            }
            if let Some(b) = self.udp_bufs.as_mut() {
                b.publish();
            }
            self.rearm();
            self.eng.flush_all(crate::sys::now_ns());
            last_work = crate::sys::mono_ns();
            self.eng.tap.flush_due(last_work);
        }
        self.eng.flush_all(crate::sys::now_ns());
        // Stopping closes every window: what they hold reaches the sinks.
        self.eng.flush_windows(crate::sys::now_ns(), None);
        self.eng.tap.flush();
        Ok(())
    }

    /// Appends new completions to the backlog, which is handled in the
    /// order the kernel posted them. A TCP receive that ended for want of
    /// buffers is handled at once instead (it carries no data): its
    /// connection is re-armed after this step, so the kernel refills the
    /// buffers this step gives back rather than all of them after the
    /// backlog; the connection's older data is still handled before
    /// anything the new receive brings.
    fn reap(&mut self) -> Result<(), WorkerError> {
        if self.cqe_pos > 0 {
            self.cqes.drain(..self.cqe_pos);
            self.cqe_pos = 0;
        }
        let from = self.cqes.len();
        self.ring.reap(&mut self.cqes);
        let mut keep = from;
        for i in from..self.cqes.len() {
            let c = self.cqes[i].clone();
            if !self.out_of_buffers(&c)? {
                self.cqes[keep] = c;
                keep += 1;
            }
        }
        self.cqes.truncate(keep);
        Ok(())
    }

    /// Whether `c` is the end of a live connection's receive for want of
    /// buffers; if so it is handled now (`complete` queues the connection
    /// for re-arming), out of turn: it carries no data.
    #[inline]
    fn out_of_buffers(&mut self, c: &cqueue::Entry) -> Result<bool, WorkerError> {
        if c.result() != -libc::ENOBUFS || !is_final(c.flags()) || self.stopping {
            return Ok(false);
        }
        let Some(tag) = Tag::decode(c.user_data()) else {
            return Ok(false);
        };
        let idx = tag.idx as usize;
        if tag.kind != Kind::Tcp
            || self.conns.get(idx).is_none_or(|k| {
                k.gen_id != tag.gen_id || k.state != ConnState::Reading || k.poisoned
            })
        {
            return Ok(false);
        }
        self.complete(c.user_data(), c.result(), c.flags())?;
        Ok(true)
    }

    /// Handles reaped completions until [`STEP_BYTES`] were received or
    /// [`STEP_CQES`] handled, or none are left.
    #[inline]
    fn step(&mut self) -> Result<(), WorkerError> {
        let end = self.cqes.len().min(self.cqe_pos + STEP_CQES);
        let mut bytes = 0u64;
        while self.cqe_pos < end && bytes < STEP_BYTES {
            let c = self.cqes[self.cqe_pos].clone();
            self.cqe_pos += 1;
            bytes += c.result().max(0) as u64;
            self.complete(c.user_data(), c.result(), c.flags())?;
        }
        Ok(())
    }

    fn complete(&mut self, ud: u64, res: i32, flags: u32) -> Result<(), WorkerError> {
        let Some(tag) = Tag::decode(ud) else {
            return Ok(());
        };
        if is_final(flags) {
            self.ring.in_flight -= 1;
        }
        match tag.kind {
            Kind::Tcp => self.on_tcp(tag, res, flags),
            Kind::Udp => self.on_udp(tag.idx as usize, res, flags)?,
            Kind::Accept => self.on_accept(tag.idx as usize, res, flags),
            Kind::Wake => {
                if !self.stopping {
                    self.ring
                        .read_wake(self.wake_fd, Tag::new(Kind::Wake, 0, 0));
                }
            }
            Kind::Tick => {
                if !self.stopping {
                    self.on_tick();
                    self.ring.tick(Tag::new(Kind::Tick, 0, 0));
                }
            }
            Kind::Close | Kind::Cancel => {}
        }
        Ok(())
    }

    fn on_accept(&mut self, li: usize, res: i32, flags: u32) {
        let src = self.listeners[li].source;
        if res < 0 && res != -libc::ECANCELED {
            self.eng.metrics.shards[self.eng.shard].sources[src]
                .accept_errors
                .add(1);
        }
        if is_final(flags) {
            self.listeners[li].armed = false;
            if res < 0 && !self.stopping {
                // EMFILE and friends: retry on the next tick, not in a loop.
                self.listeners[li].retry = true;
            } else if !self.stopping {
                self.ring.accept_multi(
                    self.listeners[li].fd.as_raw_fd(),
                    Tag::new(Kind::Accept, li as u32, 0),
                );
                self.listeners[li].armed = true;
            }
        }
        if res < 0 {
            return;
        }
        let fd = res as RawFd;
        let sc = &self.eng.metrics.shards[self.eng.shard].sources[src];
        if self.stopping || self.sources[src].conns >= self.sources[src].max_connections {
            if !self.stopping {
                sc.conns_rejected.add(1);
            }
            self.ring.close(fd, Tag::new(Kind::Close, 0, 0));
            return;
        }
        sc.conns_accepted.add(1);
        self.sources[src].conns += 1;
        let kind = self.sources[src].stream_kind();
        let max_frame = self.sources[src].max_frame;
        let now = crate::sys::mono_ns();
        let idx = match self.free_conns.pop() {
            Some(i) => {
                let c = &mut self.conns[i as usize];
                c.fd = fd;
                c.source = src;
                c.gen_id = (c.gen_id + 1) & 0xff_ffff;
                c.framer.reset(kind, max_frame);
                c.last_ns = now;
                c.state = ConnState::Reading;
                c.timed_out = false;
                c.poisoned = false;
                i
            }
            None => {
                self.conns.push(Conn {
                    fd,
                    source: src,
                    gen_id: 0,
                    framer: StreamFramer::new(kind, max_frame),
                    last_ns: now,
                    state: ConnState::Reading,
                    timed_out: false,
                    poisoned: false,
                });
                (self.conns.len() - 1) as u32
            }
        };
        let c = &self.conns[idx as usize];
        let bgid = self
            .tcp_bufs
            .as_ref()
            .expect("TCP sources have a buffer ring")
            .bgid();
        self.ring
            .recv_multi(fd, bgid, Tag::new(Kind::Tcp, idx, c.gen_id));
    }

    fn on_tcp(&mut self, tag: Tag, res: i32, flags: u32) {
        let idx = tag.idx as usize;
        let bid = cqueue::buffer_select(flags);
        let stale = idx >= self.conns.len()
            || self.conns[idx].gen_id != tag.gen_id
            || self.conns[idx].state == ConnState::Free;
        if stale {
            // Cannot happen (slots are freed on the final CQE); recycle any
            // buffer so the ring never leaks one.
            if let (Some(b), Some(bufs)) = (bid, self.tcp_bufs.as_mut()) {
                bufs.recycle(b);
            }
            return;
        }
        let fin = is_final(flags);
        if res > 0 && self.conns[idx].poisoned {
            let bid = bid.expect("a receive with data names its buffer");
            self.tcp_bufs
                .as_mut()
                .expect("TCP sources have a buffer ring")
                .recycle(bid);
            if fin {
                self.close_conn(idx, false);
            }
            return;
        }
        if res > 0 {
            let bid = bid.expect("a receive with data names its buffer");
            let Worker {
                tcp_bufs,
                conns,
                sources,
                eng,
                ..
            } = self;
            let bufs = tcp_bufs.as_mut().expect("TCP sources have a buffer ring");
            // SAFETY: the completion names `bid` and its length `res`; we
            // recycle it below, after the last use of `data`.
            let data = unsafe { bufs.buf(bid, res as usize) };
            let c = &mut conns[idx];
            c.last_ns = crate::sys::mono_ns();
            let si = c.source;
            let src = &mut sources[si];
            let now = crate::sys::now_ns();
            let (mut records, mut ts_def) = (0u64, 0u64);
            let status = c.framer.feed(data, &mut |ev| {
                on_event(ev, si, src, eng, now, &mut records, &mut ts_def)
            });
            bufs.recycle(bid);
            let sc: &SourceCounters = &eng.metrics.shards[eng.shard].sources[si];
            sc.records.add(records);
            sc.bytes.add(res as u64);
            if ts_def > 0 {
                sc.ts_defaulted.add(ts_def);
            }
            if let Status::Close(reason) = status {
                sc.conns_bad_frame.add(1);
                eng.reject(si, Reject::new(reason), &[], now);
                c.poisoned = true;
                if !fin && c.state == ConnState::Reading {
                    c.state = ConnState::Cancelling;
                    let t = Tag::new(Kind::Tcp, idx as u32, c.gen_id);
                    self.ring.cancel(t, Tag::new(Kind::Cancel, 0, 0));
                }
            }
            if !fin {
                return;
            }
            // The multishot receive ended without an error: re-arm.
            if self.conns[idx].state == ConnState::Reading && !self.stopping {
                self.conns[idx].state = ConnState::NeedsRearm;
                self.rearm.push(idx as u32);
            } else {
                self.close_conn(idx, false);
            }
            return;
        }
        if let Some(b) = bid {
            self.tcp_bufs
                .as_mut()
                .expect("TCP sources have a buffer ring")
                .recycle(b);
        }
        if !fin {
            return;
        }
        if res == -libc::ENOBUFS && self.conns[idx].state == ConnState::Reading && !self.stopping {
            // Out of buffers: the data waits in the socket; re-arm once
            // this round's buffers are back.
            self.conns[idx].state = ConnState::NeedsRearm;
            self.rearm.push(idx as u32);
            return;
        }
        // EOF (0), a reset, or our own cancel.
        self.close_conn(idx, res == 0);
    }

    /// Closes connection `idx` after its receive ended. At EOF the final
    /// unterminated line is a record; after a cancel or an error a partial
    /// frame is counted `truncated`.
    fn close_conn(&mut self, idx: usize, eof: bool) {
        let Worker {
            conns,
            sources,
            eng,
            ..
        } = self;
        let c = &mut conns[idx];
        let si = c.source;
        let now = crate::sys::now_ns();
        let src = &mut sources[si];
        let (mut records, mut ts_def) = (0u64, 0u64);
        if eof {
            c.framer
                .finish(&mut |ev| on_event(ev, si, src, eng, now, &mut records, &mut ts_def));
        } else if c.framer.pending() > 0 {
            eng.reject(si, Reject::new(Reason::Truncated), &[], now);
            c.framer.finish(&mut |_| {});
        }
        let sc = &eng.metrics.shards[eng.shard].sources[si];
        sc.records.add(records);
        if ts_def > 0 {
            sc.ts_defaulted.add(ts_def);
        }
        sc.conns_closed.add(1);
        if c.timed_out {
            sc.conns_timed_out.add(1);
        }
        src.conns -= 1;
        c.state = ConnState::Free;
        let fd = c.fd;
        self.ring.close(fd, Tag::new(Kind::Close, 0, 0));
        self.free_conns.push(idx as u32);
    }

    fn on_udp(&mut self, ui: usize, res: i32, flags: u32) -> Result<(), WorkerError> {
        let bid = cqueue::buffer_select(flags);
        let fin = is_final(flags);
        if res > 0 {
            let bid = bid.expect("a receive with data names its buffer");
            let Worker {
                udp_bufs,
                udps,
                sources,
                eng,
                ring,
                ..
            } = self;
            let bufs = udp_bufs.as_mut().expect("UDP sources have a buffer ring");
            let u = &mut udps[ui];
            let si = u.source;
            // SAFETY: as in on_tcp: `bid`/`res` from the completion, recycled
            // below after the last use.
            let buf = unsafe { bufs.buf(bid, res as usize) };
            let now = crate::sys::now_ns();
            let sc: &SourceCounters = &eng.metrics.shards[eng.shard].sources[si];
            match io_uring::types::RecvMsgOut::parse(buf, ring.msghdr(u.hdr)) {
                Ok(msg) => {
                    let control = parse_control(msg.control_data());
                    if let Some(total) = control.ovfl {
                        // The counter only grows; a value behind ours was
                        // already counted by the tick.
                        let d = total.wrapping_sub(u.ovfl);
                        if d > 0 && d < u32::MAX / 2 {
                            u.ovfl = total;
                            sc.kernel_drops.add(d as u64);
                        }
                    }
                    sc.datagrams.add(1);
                    sc.bytes.add(msg.payload_data().len() as u64);
                    if msg.is_payload_truncated() {
                        sc.udp_truncated.add(1);
                    } else {
                        let src = &mut sources[si];
                        let (mut records, mut ts_def) = (0u64, 0u64);
                        let (format, size, max) = (src.format, src.record_size, src.max_frame);
                        frame::split_datagram(
                            msg.payload_data(),
                            format,
                            size.max(1),
                            max,
                            &mut |ev| on_event(ev, si, src, eng, now, &mut records, &mut ts_def),
                        );
                        if let Some(rx) = control.rx_ns
                            && records > 0
                        {
                            let g = eng.metrics.shards[eng.shard].generation.get();
                            eng.lat.kernel(g, records, now.saturating_sub(rx));
                        }
                        let sc: &SourceCounters = &eng.metrics.shards[eng.shard].sources[si];
                        sc.records.add(records);
                        if ts_def > 0 {
                            sc.ts_defaulted.add(ts_def);
                        }
                    }
                }
                Err(()) => sc.udp_truncated.add(1),
            }
            bufs.recycle(bid);
        } else if let Some(b) = bid {
            self.udp_bufs
                .as_mut()
                .expect("UDP sources have a buffer ring")
                .recycle(b);
        }
        if fin {
            let u = &mut self.udps[ui];
            u.armed = false;
            if res == -libc::EINVAL {
                return Err(WorkerError {
                    shard: self.eng.shard,
                    msg: "the kernel refused multishot recvmsg (Linux 6.0+ is required)".into(),
                });
            }
            if !self.stopping {
                u.needs_rearm = true;
            }
        }
        Ok(())
    }

    /// Re-arms receives that ended for lack of buffers, now that this
    /// round's buffers are back.
    fn rearm(&mut self) {
        if self.stopping {
            return;
        }
        while let Some(i) = self.rearm.pop() {
            let c = &mut self.conns[i as usize];
            if c.state != ConnState::NeedsRearm {
                continue;
            }
            if c.poisoned {
                // A bad frame in data handled after its receive had ended
                // (out of buffers, re-armed early): nothing to cancel; the
                // connection closes as a cancelled one would.
                self.close_conn(i as usize, false);
                continue;
            }
            c.state = ConnState::Reading;
            let bgid = self
                .tcp_bufs
                .as_ref()
                .expect("TCP sources have a buffer ring")
                .bgid();
            self.ring
                .recv_multi(c.fd, bgid, Tag::new(Kind::Tcp, i, c.gen_id));
        }
        let bgid = self.udp_bufs.as_ref().map(BufRing::bgid);
        for (i, u) in self.udps.iter_mut().enumerate() {
            if u.needs_rearm {
                u.needs_rearm = false;
                u.armed = true;
                self.ring.recvmsg_multi(
                    u.fd.as_raw_fd(),
                    u.hdr,
                    bgid.expect("UDP sources have a buffer ring"),
                    Tag::new(Kind::Udp, i as u32, 0),
                );
            }
        }
    }

    /// Catches up on kernel drops reported by no datagram (those after the
    /// last one received).
    fn poll_udp_drops(&mut self) {
        let m = &self.eng.metrics.shards[self.eng.shard];
        for u in &mut self.udps {
            if let Ok(total) = crate::sys::socket_drops(u.fd.as_raw_fd()) {
                let d = total.wrapping_sub(u.ovfl);
                if d > 0 && d < u32::MAX / 2 {
                    u.ovfl = total;
                    m.sources[u.source].kernel_drops.add(d as u64);
                }
            }
        }
    }

    /// Once a second: close connections idle past their source's timeout.
    fn on_tick(&mut self) {
        self.eng.lat.hand_over();
        self.poll_udp_drops();
        let now = crate::sys::now_ns();
        self.eng.flush_windows(now, Some(now));
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if l.retry && !l.armed {
                l.retry = false;
                l.armed = true;
                self.ring
                    .accept_multi(l.fd.as_raw_fd(), Tag::new(Kind::Accept, i as u32, 0));
            }
        }
        let now = crate::sys::mono_ns();
        for (i, c) in self.conns.iter_mut().enumerate() {
            if c.state != ConnState::Reading {
                continue;
            }
            let Some(t) = self.sources[c.source].idle_timeout_ns else {
                continue;
            };
            if now.saturating_sub(c.last_ns) > t {
                c.state = ConnState::Cancelling;
                c.timed_out = true;
                self.ring.cancel(
                    Tag::new(Kind::Tcp, i as u32, c.gen_id),
                    Tag::new(Kind::Cancel, 0, 0),
                );
            }
        }
    }

    /// Stops reading: cancels every armed operation; the loop then runs
    /// until their final completions have been processed, so every byte
    /// the kernel handed over is decoded and reaches the pipeline.
    fn begin_stop(&mut self) {
        self.stopping = true;
        self.poll_udp_drops();
        let cancel = Tag::new(Kind::Cancel, 0, 0);
        for (i, l) in self.listeners.iter().enumerate() {
            if l.armed {
                self.ring
                    .cancel(Tag::new(Kind::Accept, i as u32, 0), cancel);
            }
        }
        for (i, u) in self.udps.iter().enumerate() {
            if u.armed {
                self.ring.cancel(Tag::new(Kind::Udp, i as u32, 0), cancel);
            }
        }
        let mut to_close = Vec::new();
        for (i, c) in self.conns.iter_mut().enumerate() {
            match c.state {
                ConnState::Reading => {
                    c.state = ConnState::Cancelling;
                    self.ring
                        .cancel(Tag::new(Kind::Tcp, i as u32, c.gen_id), cancel);
                }
                ConnState::NeedsRearm => to_close.push(i),
                _ => {}
            }
        }
        for i in to_close {
            self.close_conn(i, false);
        }
        self.ring.cancel(Tag::new(Kind::Wake, 0, 0), cancel);
        self.ring.cancel(Tag::new(Kind::Tick, 0, 0), cancel);
    }
}

/// What a datagram's control messages say: the socket's cumulative drop
/// count (`SO_RXQ_OVFL`) and the kernel's receive time in ns since the
/// epoch (`SCM_TIMESTAMPNS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Control {
    ovfl: Option<u32>,
    rx_ns: Option<u64>,
}

fn parse_control(control: &[u8]) -> Control {
    let hdr = std::mem::size_of::<libc::cmsghdr>();
    let mut out = Control::default();
    let mut off = 0;
    while off + hdr <= control.len() {
        // SAFETY: `off + hdr <= len`; read_unaligned copes with alignment.
        let c: libc::cmsghdr = unsafe { std::ptr::read_unaligned(control[off..].as_ptr().cast()) };
        let len = c.cmsg_len;
        if len < hdr || off + len > control.len() {
            break;
        }
        let d = &control[off + hdr..off + len];
        if c.cmsg_level == libc::SOL_SOCKET {
            if c.cmsg_type == libc::SO_RXQ_OVFL && d.len() >= 4 {
                out.ovfl = Some(u32::from_ne_bytes([d[0], d[1], d[2], d[3]]));
            } else if c.cmsg_type == libc::SCM_TIMESTAMPNS && d.len() >= 16 {
                let sec = i64::from_ne_bytes(d[..8].try_into().expect("8 bytes"));
                let nsec = i64::from_ne_bytes(d[8..16].try_into().expect("8 bytes"));
                if sec > 0 && (0..1_000_000_000).contains(&nsec) {
                    out.rx_ns = Some(sec as u64 * 1_000_000_000 + nsec as u64);
                }
            }
        }
        off += len.next_multiple_of(std::mem::size_of::<usize>());
    }
    out
}

#[cfg(test)]
mod control_tests {
    use super::*;

    fn cmsg(level: i32, ty: i32, data: &[u8], out: &mut Vec<u8>) {
        let hdr = std::mem::size_of::<libc::cmsghdr>();
        let len = hdr + data.len();
        // SAFETY: cmsghdr is plain integers; all zeroes is a valid value.
        let mut h: libc::cmsghdr = unsafe { std::mem::zeroed() };
        h.cmsg_len = len;
        h.cmsg_level = level;
        h.cmsg_type = ty;
        // SAFETY: a plain C struct viewed as its bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts((&h as *const libc::cmsghdr).cast::<u8>(), hdr) };
        out.extend_from_slice(bytes);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(std::mem::size_of::<usize>()), 0);
    }

    #[test]
    fn drop_count_and_receive_time_from_control_messages() {
        let mut c = Vec::new();
        cmsg(
            libc::SOL_SOCKET,
            libc::SO_RXQ_OVFL,
            &7u32.to_ne_bytes(),
            &mut c,
        );
        let mut ts = Vec::new();
        ts.extend_from_slice(&1_700_000_000i64.to_ne_bytes());
        ts.extend_from_slice(&123_456_789i64.to_ne_bytes());
        cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &ts, &mut c);
        assert!(c.len() <= CONTROL_LEN, "both fit the control space");
        assert_eq!(
            parse_control(&c),
            Control {
                ovfl: Some(7),
                rx_ns: Some(1_700_000_000_123_456_789)
            }
        );
        // Cut short, or garbage: whatever is whole, nothing invented.
        assert_eq!(
            parse_control(&c[..20]),
            Control {
                ovfl: Some(7),
                rx_ns: None
            }
        );
        assert_eq!(parse_control(&c[..18]), Control::default());
        assert_eq!(parse_control(&[0xff; 40]), Control::default());
    }
}
