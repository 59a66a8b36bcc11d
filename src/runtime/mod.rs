//! The appliance: sockets, shard workers, sink threads, generations, and
//! an orderly stop.
//!
//! [`Appliance::start`] validates everything that can fail before any
//! thread starts reading: the pipeline compiles, every sink opens, every
//! address is claimed and bound (a second appliance on the same address
//! fails with "address in use"), every worker creates its io_uring and
//! buffer rings. Then the control thread (the caller) owns the
//! [`Publisher`] and may publish generations; [`Appliance::shutdown`]
//! drains everything in order: workers stop reading and flush, then sinks
//! drain their rings and flush.

pub mod bufring;
pub mod ring;
pub mod worker;

use crate::config::{Config, SinkKind, Transport};
use crate::metrics::Metrics;
use crate::pipeline::generation::{PublishError, Publisher, Reader};
use crate::pipeline::{PipelineError, Plan};
use crate::sink::Lifecycle;
use crate::sink::tap::{TapCtl, TapRx, TapWant};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use worker::{GenValue, ShardExec, SourceRt, Worker, WorkerSetup};

/// Why the appliance could not start: one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Pipeline(#[from] PipelineError),
    #[error("{0}")]
    Unsupported(String),
    #[error("source {name:?}: cannot listen on {transport} {addr}: {msg}")]
    Listen {
        name: String,
        transport: &'static str,
        addr: SocketAddr,
        msg: String,
    },
    #[error("{0}")]
    Sink(std::io::Error),
    /// A journal that cannot be opened (exit code 74).
    #[error("{0}")]
    Journal(crate::journal::OpenError),
    #[error("{0}")]
    Worker(#[from] worker::WorkerError),
}

/// Counts at the end of a run, for the summary and for tests.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub elapsed: Duration,
    /// Per source: (name, records decoded, rejects, kernel drops, truncated datagrams).
    pub sources: Vec<SourceSummary>,
    pub chain_in: u64,
    pub filtered: u64,
    /// Records taken into windows (they leave as aggregates).
    pub windowed: u64,
    /// Records dropped behind a window's watermark.
    pub late: u64,
    /// Records a full state table could not hold.
    pub state_full: u64,
    /// Per sink: (name, records written, dropped on full, dropped on error).
    pub sinks: Vec<SinkSummary>,
    /// Everything drained before the deadline.
    pub clean: bool,
    /// What was left when it did not.
    pub left: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct SourceSummary {
    pub name: String,
    pub records: u64,
    pub rejects: Vec<(crate::codec::Reason, u64)>,
    pub kernel_drops: u64,
    pub udp_truncated: u64,
    pub connections: u64,
}

#[derive(Clone, Debug, Default)]
pub struct SinkSummary {
    pub name: String,
    pub emitted: u64,
    pub written: u64,
    pub dropped_full: u64,
    pub dropped_error: u64,
    pub dropped_shutdown: u64,
}

impl Summary {
    /// The summary printed on exit.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "mutstream: stopped after {:.1} s",
            self.elapsed.as_secs_f64()
        );
        for src in &self.sources {
            let bad: u64 = src.rejects.iter().map(|r| r.1).sum();
            let _ = write!(
                s,
                "  source {}: {} records, {} bad",
                src.name, src.records, bad
            );
            if src.kernel_drops > 0 || src.udp_truncated > 0 {
                let _ = write!(
                    s,
                    ", {} kernel drops, {} truncated datagrams",
                    src.kernel_drops, src.udp_truncated
                );
            }
            if src.connections > 0 {
                let _ = write!(s, ", {} connections", src.connections);
            }
            if bad > 0 {
                let parts: Vec<String> = src
                    .rejects
                    .iter()
                    .filter(|r| r.1 > 0)
                    .map(|(r, n)| format!("{r}: {n}"))
                    .collect();
                let _ = write!(s, " ({})", parts.join(", "));
            }
            s.push('\n');
        }
        let _ = write!(
            s,
            "  pipeline: {} records in, {} filtered out",
            self.chain_in, self.filtered
        );
        if self.windowed + self.late + self.state_full > 0 {
            let _ = write!(
                s,
                ", {} into windows, {} late, {} over max_state_keys",
                self.windowed, self.late, self.state_full
            );
        }
        s.push('\n');
        for k in &self.sinks {
            let _ = write!(s, "  sink {}: {} records written", k.name, k.written);
            if k.dropped_full + k.dropped_error + k.dropped_shutdown > 0 {
                let _ = write!(
                    s,
                    ", dropped: {} on full (ring or disk), {} write errors, {} at shutdown",
                    k.dropped_full, k.dropped_error, k.dropped_shutdown
                );
            }
            s.push('\n');
        }
        for l in &self.left {
            let _ = writeln!(s, "  not drained: {l}");
        }
        s
    }
}

/// The cores no pinned worker uses (sink, journal and control threads run
/// there); empty when workers are not pinned or take every core.
pub fn housekeeping_cores(rt: &crate::config::Runtime) -> Vec<usize> {
    if !rt.pin {
        return Vec::new();
    }
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .iter()
        .skip(rt.shards)
        .map(|c| c.id)
        .collect()
}

/// A running appliance.
pub struct Appliance {
    config: Config,
    metrics: Arc<Metrics>,
    life: Arc<Lifecycle>,
    publisher: Publisher<GenValue, ShardExec>,
    wake_fds: Vec<OwnedFd>,
    workers: Vec<JoinHandle<Result<(), worker::WorkerError>>>,
    sink_threads: Vec<JoinHandle<()>>,
    addrs: Vec<SocketAddr>,
    _claims: Vec<OwnedFd>,
    next_generation: u64,
    /// When the latest generation was published (CLOCK_MONOTONIC ns):
    /// acknowledgement times count from here, waking parked workers
    /// included.
    published_ns: u64,
    started: Instant,
    tap_ctl: Arc<TapCtl>,
    /// Each shard's tap ring, read by the control thread.
    taps: Vec<TapRx>,
    /// Each shard's latency histograms, read by the control thread.
    lats: Vec<crate::metrics::latency::LatencyRx>,
}

fn unsupported(cfg: &Config) -> Option<String> {
    for s in &cfg.sinks {
        if matches!(s.kind, SinkKind::Tcp | SinkKind::Udp) {
            return Some(format!(
                "{}:{}: sink {:?}: kind = {:?} is not yet supported in this version (use \"journal\", \"file\", \"stdout\" or \"blackhole\")",
                cfg.origin,
                s.line,
                s.name,
                s.kind.name()
            ));
        }
    }
    None
}

impl Appliance {
    /// Starts the appliance on `config`.
    ///
    /// # Errors
    /// Any failure before data can flow, as one line: the pipeline, an
    /// unsupported feature, a busy address, a sink that will not open, a
    /// kernel without the io_uring features needed.
    pub fn start(config: Config) -> Result<Appliance, StartError> {
        let plan = crate::pipeline::compile_config(&config)?;
        Appliance::start_with(config, plan, 1)
    }

    /// Starts the appliance running `plan` as generation `first` (a
    /// restored generation keeps its number; later ones count on).
    ///
    /// # Errors
    /// As [`Appliance::start`].
    pub fn start_with(config: Config, plan: Plan, first: u64) -> Result<Appliance, StartError> {
        if let Some(u) = unsupported(&config) {
            return Err(StartError::Unsupported(u));
        }
        let rt = &config.runtime;
        let shards = rt.shards;
        let metrics = Arc::new(Metrics::new(
            shards,
            config.sources.len(),
            config.sinks.len(),
        ));
        let life = Arc::new(Lifecycle::default());

        // Sockets first: a busy address should fail before anything runs.
        let mut claims = Vec::new();
        let mut addrs = Vec::new();
        let mut per_shard: Vec<Vec<(usize, OwnedFd)>> = (0..shards).map(|_| Vec::new()).collect();
        for (si, s) in config.sources.iter().enumerate() {
            let transport = if s.transport == Transport::Udp {
                "udp"
            } else {
                "tcp"
            };
            let fail = |addr: SocketAddr, e: std::io::Error| StartError::Listen {
                name: s.name.clone(),
                transport,
                addr,
                msg: if e.kind() == std::io::ErrorKind::AddrInUse {
                    "address in use (another process, or another mutstream, listens there)".into()
                } else {
                    e.to_string()
                },
            };
            if s.listen.port() != 0 {
                claims.push(
                    crate::sys::claim_address(transport, &s.listen)
                        .map_err(|e| fail(s.listen, e))?,
                );
            }
            let mut addr = s.listen;
            for (k, list) in per_shard.iter_mut().enumerate() {
                let fd = match s.transport {
                    Transport::Udp => crate::sys::udp_socket(&addr, s.rcvbuf_bytes),
                    Transport::Tcp => crate::sys::tcp_listener(&addr, s.rcvbuf_bytes),
                }
                .map_err(|e| fail(addr, e))?;
                if k == 0 {
                    addr = crate::sys::local_addr(fd.as_raw_fd()).map_err(|e| fail(addr, e))?;
                    if s.listen.port() == 0 {
                        claims.push(
                            crate::sys::claim_address(transport, &addr)
                                .map_err(|e| fail(addr, e))?,
                        );
                    }
                }
                list.push((si, fd));
            }
            addrs.push(addr);
        }

        let cores = core_affinity::get_core_ids().unwrap_or_default();
        // Cores no pinned worker uses: sink threads go there.
        let housekeeping: Vec<core_affinity::CoreId> = housekeeping_cores(rt)
            .into_iter()
            .map(|id| core_affinity::CoreId { id })
            .collect();
        // The widest row each sink gets from the first generation (text
        // values counted at 32 bytes): its batches are allocated at that
        // size, so full batches do not grow them on the worker.
        let mut row_bytes = vec![0usize; config.sinks.len()];
        for e in plan.chains.iter().flatten().flat_map(|c| c.emits()) {
            row_bytes[e.sink] = row_bytes[e.sink].max(e.schema.row_bytes(32));
        }
        let (ports, sink_threads) = crate::sink::start(
            &config.sinks,
            shards,
            &housekeeping,
            crate::sink::Sizes {
                ring_capacity: rt.ring_capacity,
                batch_max: rt.batch_max,
                row_bytes: &row_bytes,
            },
            &metrics,
            &life,
        )
        .map_err(|e| match e {
            crate::sink::StartError::Open(e) => StartError::Sink(e),
            crate::sink::StartError::Journal(e) => StartError::Journal(e),
        })?;

        let value = GenValue {
            chains: plan.chains,
        };
        let states = (0..shards)
            .map(|_| ShardExec::for_generation(&value, rt.batch_max, rt.max_state_keys))
            .collect();
        let publisher = Publisher::new(
            shards,
            first,
            value,
            states,
            rt.max_live_generations as usize,
        );

        if rt.pin && cores.len() < shards {
            tracing::warn!(
                shards,
                cores = cores.len(),
                "fewer cores than shards: shards {}.. run unpinned",
                cores.len()
            );
        }
        let mut wake_fds = Vec::new();
        let mut workers = Vec::new();
        let mut ports = ports.into_iter();
        let mut per_shard = per_shard.into_iter();
        let (ready_tx, ready_rx) =
            crossbeam::channel::bounded::<Result<(), worker::WorkerError>>(shards);
        let tap_ctl = Arc::new(TapCtl::default());
        let mut taps = Vec::with_capacity(shards);
        let mut lats = Vec::with_capacity(shards);
        for k in 0..shards {
            let (tap_port, tap_rx) = crate::sink::tap::channel(k as u16, rt.batch_max);
            taps.push(tap_rx);
            let (lat_port, lat_rx) = crate::metrics::latency::channel(k as u16);
            lats.push(lat_rx);
            let wake = crate::sys::eventfd().map_err(|e| {
                StartError::Worker(worker::WorkerError {
                    shard: k,
                    msg: format!("eventfd: {e}"),
                })
            })?;
            let sources = config
                .sources
                .iter()
                .map(|s| {
                    let schema = &config.schemas[s.schema];
                    SourceRt {
                        name: s.name.clone(),
                        transport: s.transport,
                        framing: s.framing,
                        format: s.decoder.format,
                        schema: s.schema,
                        record_size: schema.size.unwrap_or(0) as usize,
                        max_frame: s.max_frame,
                        max_connections: s.max_connections,
                        idle_timeout_ns: s.idle_timeout.map(|d| d.as_nanos() as u64),
                        decoder: crate::codec::Decoder::new(&s.decoder, schema),
                        conns: 0,
                    }
                })
                .collect();
            let setup = WorkerSetup {
                shard: k,
                core: if rt.pin { cores.get(k).copied() } else { None },
                sockets: per_shard.next().expect("one socket list per shard"),
                sources,
                schemas: config.schemas.clone(),
                reader: Reader::new(publisher.cell(), k),
                ports: ports.next().expect("one port list per shard"),
                metrics: metrics.clone(),
                life: life.clone(),
                wake_fd: wake.as_raw_fd(),
                batch_max: rt.batch_max,
                idle: rt.idle,
                max_symbols: rt.max_symbols,
                recv_buffers: rt.recv_buffers,
                recv_buffer_size: rt.recv_buffer_size,
                tap: tap_port,
                tap_ctl: tap_ctl.clone(),
                lat: lat_port,
            };
            wake_fds.push(wake);
            let ready = ready_tx.clone();
            let metrics_w = metrics.clone();
            let h = std::thread::Builder::new()
                .name(format!("mutstream-w{k}"))
                .spawn(move || {
                    crate::sys::block_control_signals();
                    if let Some(c) = setup.core {
                        core_affinity::set_for_current(c);
                    }
                    metrics_w.shards[k]
                        .tid
                        .store(crate::sys::gettid(), Ordering::Relaxed);
                    match Worker::new(setup) {
                        Ok(w) => {
                            let _ = ready.send(Ok(()));
                            w.run()
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            let _ = ready.send(Err(e));
                            Err(worker::WorkerError { shard: k, msg })
                        }
                    }
                })
                .map_err(|e| {
                    StartError::Worker(worker::WorkerError {
                        shard: k,
                        msg: format!("cannot start thread: {e}"),
                    })
                })?;
            workers.push(h);
        }
        let mut app = Appliance {
            config,
            metrics,
            life,
            publisher,
            wake_fds,
            workers,
            sink_threads,
            addrs,
            _claims: claims,
            next_generation: first + 1,
            tap_ctl,
            taps,
            lats,
            published_ns: crate::sys::mono_ns(),
            started: Instant::now(),
        };
        for _ in 0..shards {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    app.abort();
                    return Err(StartError::Worker(e));
                }
                Err(_) => {
                    app.abort();
                    return Err(StartError::Unsupported(
                        "a worker exited during startup".into(),
                    ));
                }
            }
        }
        Ok(app)
    }

    /// Stops everything after a failed start.
    fn abort(&mut self) {
        self.life.stop.store(true, Ordering::Release);
        self.life.abandon.store(true, Ordering::Release);
        self.wake_all();
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        self.life.workers_done.store(true, Ordering::Release);
        for h in self.sink_threads.drain(..) {
            let _ = h.join();
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The bound address of source `name` (resolves port 0).
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        let i = self.config.sources.iter().position(|s| s.name == name)?;
        Some(self.addrs[i])
    }

    fn wake_all(&self) {
        for fd in &self.wake_fds {
            crate::sys::eventfd_signal(fd.as_raw_fd());
        }
    }

    /// The generation the appliance runs (the latest published).
    pub fn generation(&self) -> u64 {
        self.publisher.latest().id
    }

    /// The generation each shard has acknowledged.
    pub fn acks(&self) -> Vec<u64> {
        self.publisher.acks()
    }

    /// The latest generation each shard has seen: above its
    /// acknowledgement while one is armed to switch at an event time.
    pub fn seen(&self) -> Vec<u64> {
        self.publisher.seen()
    }

    /// The event time at which the latest generation switches, if it was
    /// published with one.
    pub fn switch_at(&self) -> Option<i64> {
        self.publisher.latest().switch_at
    }

    /// Publishes `plan` as the next generation and wakes parked workers;
    /// returns its id. Working memory for every shard is built here, off
    /// the hot path.
    ///
    /// # Errors
    /// Too many generations still held by shards.
    pub fn publish(&mut self, plan: Plan) -> Result<u64, PublishError> {
        self.publish_at(plan, None)
    }

    /// As [`Appliance::publish`]; with `switch_at`, each shard switches at
    /// its first batch holding a record at or after that event time (ns).
    ///
    /// # Errors
    /// Too many generations still held by shards.
    pub fn publish_at(&mut self, plan: Plan, switch_at: Option<i64>) -> Result<u64, PublishError> {
        let id = self.next_generation;
        let value = GenValue {
            chains: plan.chains,
        };
        let states = (0..self.config.runtime.shards)
            .map(|_| {
                ShardExec::for_generation(
                    &value,
                    self.config.runtime.batch_max,
                    self.config.runtime.max_state_keys,
                )
            })
            .collect();
        self.published_ns = crate::sys::mono_ns();
        self.publisher.publish_at(id, value, states, switch_at)?;
        self.next_generation += 1;
        self.wake_all();
        Ok(id)
    }

    /// Waits until every shard runs generation `id` (or a later one);
    /// returns how long that took from its publication (for the latest
    /// generation; from the call otherwise), or the shards that did not.
    pub fn wait_acked(&mut self, id: u64, timeout: Duration) -> Result<Duration, Vec<usize>> {
        self.wait(id, timeout, false)
    }

    /// Waits until every shard has generation `id` armed (or runs it or a
    /// later one); as [`Appliance::wait_acked`].
    pub fn wait_armed(&mut self, id: u64, timeout: Duration) -> Result<Duration, Vec<usize>> {
        self.wait(id, timeout, true)
    }

    fn wait(&mut self, id: u64, timeout: Duration, armed: bool) -> Result<Duration, Vec<usize>> {
        let t0 = Instant::now();
        let mut spins = 0u32;
        loop {
            let done = match armed {
                true => self.publisher.all_seen(id),
                false => self.publisher.all_acked(id),
            };
            if done {
                let d = self.ack_time(id, armed).unwrap_or_else(|| t0.elapsed());
                self.publisher.reclaim();
                return Ok(d);
            }
            if t0.elapsed() > timeout {
                return Err(match armed {
                    true => self.publisher.unseen(id),
                    false => self.publisher.laggards(id),
                });
            }
            spins += 1;
            if spins > 100 {
                std::thread::sleep(Duration::from_micros(50));
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// From the publication of the latest generation `id` to the last
    /// shard's switch, as the workers stamped it (`switched_ns`, stored
    /// before their acknowledgement): what the control thread observes
    /// later, when it gets a CPU, is not counted. `None` for an armed
    /// generation or an older one.
    fn ack_time(&self, id: u64, armed: bool) -> Option<Duration> {
        if armed || id != self.publisher.latest().id {
            return None;
        }
        let acks = self.publisher.acks();
        let last = (self.metrics.shards.iter().zip(&acks))
            .filter(|(_, a)| **a != u64::MAX)
            .map(|(m, _)| m.switched_ns.get())
            .max()?;
        Some(Duration::from_nanos(last.saturating_sub(self.published_ns)))
    }

    /// Frees generations no shard holds any more.
    pub fn reclaim(&mut self) -> usize {
        self.publisher.reclaim()
    }

    /// Whether a worker has exited (it only does so on a fatal error
    /// before shutdown).
    pub fn failed_worker(&self) -> bool {
        self.workers.iter().any(JoinHandle::is_finished) && !self.life.stop.load(Ordering::Relaxed)
    }

    /// Stops reading, drains every batch and ring, flushes every sink.
    /// Within `timeout` nothing accepted is lost; after it, blocked workers
    /// drop what they hold (counted) and the summary says what was left.
    pub fn shutdown(mut self, timeout: Duration) -> Summary {
        let deadline = Instant::now() + timeout;
        self.life.stop.store(true, Ordering::Release);
        self.wake_all();
        let mut left = Vec::new();
        let mut errors = Vec::new();
        let mut abandoned = false;
        while self.workers.iter().any(|h| !h.is_finished()) {
            if Instant::now() > deadline && !abandoned {
                abandoned = true;
                self.life.abandon.store(true, Ordering::Release);
                left.push(
                    "shards were still waiting for sink ring space at the deadline".to_string(),
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        for h in self.workers.drain(..) {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e.to_string()),
                Err(_) => errors.push("a shard worker panicked".into()),
            }
        }
        // Pairs with the sink threads' Acquire: every batch a worker pushed
        // is visible to a sink that sees `workers_done`.
        self.life.workers_done.store(true, Ordering::Release);
        let sink_deadline = deadline.max(Instant::now() + Duration::from_millis(100));
        while self.sink_threads.iter().any(|h| !h.is_finished()) {
            if Instant::now() > sink_deadline {
                left.push("a sink could not finish writing (stuck output?)".to_string());
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let done: Vec<JoinHandle<()>> = self.sink_threads.drain(..).collect();
        for h in done {
            if h.is_finished() {
                let _ = h.join();
            }
        }
        left.extend(errors);
        let mut s = self.summary();
        s.clean = left.is_empty();
        s.left = left;
        s
    }

    /// Asks every shard to copy rows leaving a stage (`TapWant::OFF`:
    /// stop). Shards follow from their next batch.
    pub fn set_tap(&self, want: &TapWant) {
        self.tap_ctl.set(want);
    }

    /// Hands every tapped batch waiting in the shards' tap rings to `f`.
    pub fn drain_tap(&mut self, mut f: impl FnMut(&crate::sink::tap::TapBatch)) {
        for t in &mut self.taps {
            t.drain(&mut f);
        }
    }

    /// Hands every latency batch the shards have handed over to `f`.
    pub fn drain_latency(&mut self, mut f: impl FnMut(&crate::metrics::latency::LatencyBatch)) {
        for l in &mut self.lats {
            l.drain(&mut f);
        }
    }

    /// Counts so far.
    pub fn summary(&self) -> Summary {
        let m = &self.metrics;
        let sources = self
            .config
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| SourceSummary {
                name: s.name.clone(),
                records: m.sum(|x| x.sources[i].records.get()),
                rejects: crate::codec::Reason::ALL
                    .iter()
                    .map(|r| (*r, m.sum(|x| x.sources[i].rejects[r.index()].get())))
                    .collect(),
                kernel_drops: m.sum(|x| x.sources[i].kernel_drops.get()),
                udp_truncated: m.sum(|x| x.sources[i].udp_truncated.get()),
                connections: m.sum(|x| x.sources[i].conns_accepted.get()),
            })
            .collect();
        let sinks = self
            .config
            .sinks
            .iter()
            .enumerate()
            .map(|(i, k)| SinkSummary {
                name: k.name.clone(),
                emitted: m.sum(|x| x.sinks[i].emitted.get()),
                // A blackhole counts on the workers, a journal is
                // written by them.
                written: match k.kind {
                    SinkKind::Blackhole => m.sum(|x| x.sinks[i].emitted.get()),
                    SinkKind::Journal => {
                        m.sum(|x| x.sinks[i].emitted.get() - x.sinks[i].dropped_too_large.get())
                    }
                    _ => m.sinks[i].records.get(),
                },
                dropped_full: m.sum(|x| {
                    x.sinks[i].dropped_full.get()
                        + x.sinks[i].dropped_disk_full.get()
                        + x.sinks[i].dropped_too_large.get()
                }),
                dropped_error: m.sinks[i].dropped_error.get(),
                dropped_shutdown: m.sum(|x| x.sinks[i].dropped_shutdown.get()),
            })
            .collect();
        Summary {
            elapsed: self.started.elapsed(),
            sources,
            chain_in: m.sum(|x| x.chain_in.get()),
            filtered: m.sum(|x| x.filtered.get()),
            windowed: m.sum(|x| x.windowed.get()),
            late: m.sum(|x| x.late.get()),
            state_full: m.sum(|x| x.state_full.get()),
            sinks,
            clean: true,
            left: Vec::new(),
        }
    }
}
