//! `GET /metrics`: the counters in the Prometheus text exposition format
//! (version 0.0.4).
//!
//! Rendered on the control thread from the shards' single-writer counters
//! (Relaxed loads; nothing on the hot path changes for a scrape). Names
//! follow the Prometheus conventions: a `mutstream_` prefix, base units
//! (`_seconds`, `_bytes`), `_total` on counters, one contiguous group per
//! family with `# HELP` and `# TYPE` first. Labels are `shard`, `source`,
//! `sink`, `reason` and `result` only, never record values, so `sum()`
//! over any of them means something.

use super::{Metrics, ShardMetrics, SinkShardCounters, SourceCounters};
use crate::codec::Reason;
use std::fmt::Write;

/// The control plane's own figures, beside the shards' counters.
#[derive(Clone, Debug, Default)]
pub struct ControlFigures {
    /// The latest published generation.
    pub generation: u64,
    /// Changes since start: applied (every shard runs it), published but
    /// not acknowledged in time, refused.
    pub applied: u64,
    pub published: u64,
    pub rejected: u64,
    /// Acknowledgement times of applied changes, as a cumulative
    /// histogram over [`ACK_BUCKETS`] (the last slot is `+Inf`).
    pub ack_buckets: Vec<u64>,
    pub ack_sum_seconds: f64,
    /// The same times at full resolution (ns), for `status` and `top`.
    pub acks_ns: Option<hdrhistogram::Histogram<u64>>,
}

/// Upper bounds (seconds) of the latency histograms' buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.000001, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.01,
    0.1,
];

/// Upper bounds (seconds) of the acknowledgement histogram's buckets.
pub const ACK_BUCKETS: [f64; 10] = [
    0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.01, 0.1, 1.0,
];

impl ControlFigures {
    /// The `q` quantile of acknowledgement times so far (ns).
    pub fn ack_quantile_ns(&self, q: f64) -> Option<u64> {
        self.acks_ns
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(q))
    }

    /// Records one acknowledgement time.
    pub fn observe_ack(&mut self, seconds: f64) {
        self.acks_ns
            .get_or_insert_with(|| {
                hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
                    .expect("valid bounds")
            })
            .saturating_record((seconds * 1e9) as u64);
        if self.ack_buckets.len() != ACK_BUCKETS.len() + 1 {
            self.ack_buckets = vec![0; ACK_BUCKETS.len() + 1];
        }
        for (i, &le) in ACK_BUCKETS.iter().enumerate() {
            if seconds <= le {
                self.ack_buckets[i] += 1;
            }
        }
        self.ack_buckets[ACK_BUCKETS.len()] += 1;
        self.ack_sum_seconds += seconds;
    }
}

/// Label values escaped as the text format requires (`\\`, `\"`, `\n`).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One family: HELP, TYPE, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", esc(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {v}");
    }
}

/// Names the appliance's parts for the labels.
pub struct Names<'a> {
    pub sources: Vec<&'a str>,
    pub sinks: Vec<&'a str>,
    /// The stages of the latest generation, in order, and that
    /// generation: shards still running another are left out of the
    /// stage families until they switch.
    pub stages: Vec<&'a str>,
    pub generation: u64,
    pub ring_capacity: usize,
}

/// A per-(shard, source) counter family.
fn per_source(
    out: &mut String,
    m: &Metrics,
    names: &Names<'_>,
    name: &str,
    help: &str,
    f: impl Fn(&SourceCounters) -> u64,
) {
    let mut fam = Family::new(out, name, "counter", help);
    for (k, sh) in m.shards.iter().enumerate() {
        let shard = k.to_string();
        for (i, src) in names.sources.iter().enumerate() {
            fam.sample(
                name,
                &[("source", src), ("shard", &shard)],
                f(&sh.sources[i]),
            );
        }
    }
}

/// A per-(shard, sink) counter family.
fn per_sink(
    out: &mut String,
    m: &Metrics,
    names: &Names<'_>,
    name: &str,
    help: &str,
    f: impl Fn(&SinkShardCounters) -> String,
) {
    let mut fam = Family::new(out, name, "counter", help);
    for (k, sh) in m.shards.iter().enumerate() {
        let shard = k.to_string();
        for (i, sink) in names.sinks.iter().enumerate() {
            fam.sample(name, &[("sink", sink), ("shard", &shard)], f(&sh.sinks[i]));
        }
    }
}

/// A per-shard family.
fn per_shard(
    out: &mut String,
    m: &Metrics,
    name: &str,
    kind: &str,
    help: &str,
    f: impl Fn(usize, &ShardMetrics) -> u64,
) {
    let mut fam = Family::new(out, name, kind, help);
    for (k, sh) in m.shards.iter().enumerate() {
        fam.sample(name, &[("shard", &k.to_string())], f(k, sh));
    }
}

/// Per-(source, shard) counters: name, help, value.
#[allow(clippy::type_complexity)]
const SOURCE_COUNTERS: &[(&str, &str, fn(&SourceCounters) -> u64)] = &[
    (
        "mutstream_records_total",
        "Records decoded and handed to the pipeline.",
        |s| s.records.get(),
    ),
    ("mutstream_received_bytes_total", "Bytes received.", |s| {
        s.bytes.get()
    }),
    (
        "mutstream_kernel_drops_total",
        "Datagrams the kernel dropped on a full socket buffer.",
        |s| s.kernel_drops.get(),
    ),
    (
        "mutstream_truncated_datagrams_total",
        "Datagrams longer than the receive buffer, dropped.",
        |s| s.udp_truncated.get(),
    ),
    (
        "mutstream_connections_accepted_total",
        "TCP connections accepted.",
        |s| s.conns_accepted.get(),
    ),
    (
        "mutstream_connections_closed_total",
        "TCP connections closed.",
        |s| s.conns_closed.get(),
    ),
    (
        "mutstream_connections_refused_total",
        "TCP connections refused over max_connections.",
        |s| s.conns_rejected.get(),
    ),
];

/// Per-shard counters: name, help, value.
#[allow(clippy::type_complexity)]
const SHARD_COUNTERS: &[(&str, &str, fn(&ShardMetrics) -> u64)] = &[
    (
        "mutstream_batches_total",
        "Batches the pipeline ran.",
        |s| s.batches.get(),
    ),
    (
        "mutstream_pipeline_records_total",
        "Records that entered the pipeline.",
        |s| s.chain_in.get(),
    ),
    (
        "mutstream_filtered_records_total",
        "Records removed by filter, dedup and sample stages.",
        |s| s.filtered.get(),
    ),
    (
        "mutstream_windowed_records_total",
        "Records taken into windows.",
        |s| s.windowed.get(),
    ),
    (
        "mutstream_late_records_total",
        "Records behind a window's watermark, dropped.",
        |s| s.late.get(),
    ),
    (
        "mutstream_state_full_records_total",
        "Records a full state table (max_state_keys) could not hold.",
        |s| s.state_full.get(),
    ),
    (
        "mutstream_generation_switches_total",
        "Generation switches made by each shard.",
        |s| s.generation_switches.get(),
    ),
    (
        "mutstream_late_for_switch_records_total",
        "Records before an apply --at time that ran on the new generation.",
        |s| s.late_for_switch.get(),
    ),
    (
        "mutstream_tap_dropped_records_total",
        "Tapped records a shard had no tap buffer for (nobody reading).",
        |s| s.tap_dropped.get(),
    ),
];

/// The whole exposition. `acks[k]` is the generation shard `k` runs.
pub fn render(
    m: &Metrics,
    names: &Names<'_>,
    acks: &[u64],
    c: &ControlFigures,
    latency: Option<&super::latency::ByGeneration>,
) -> String {
    let mut o = String::with_capacity(16 * 1024);
    Family::new(
        &mut o,
        "mutstream_build_info",
        "gauge",
        "The running build: its version; always 1.",
    )
    .sample(
        "mutstream_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    for &(name, help, f) in SOURCE_COUNTERS {
        per_source(&mut o, m, names, name, help, f);
    }
    for &(name, help, f) in SHARD_COUNTERS {
        per_shard(&mut o, m, name, "counter", help, |_, s| f(s));
    }
    {
        let name = "mutstream_bad_records_total";
        let mut fam = Family::new(
            &mut o,
            name,
            "counter",
            "Records refused by the decoder, by reason.",
        );
        for (k, sh) in m.shards.iter().enumerate() {
            let shard = k.to_string();
            for (i, src) in names.sources.iter().enumerate() {
                for r in Reason::ALL {
                    let reason = r.to_string();
                    fam.sample(
                        name,
                        &[("source", src), ("reason", &reason), ("shard", &shard)],
                        sh.sources[i].rejects[r.index()].get(),
                    );
                }
            }
        }
    }
    for (name, help, out) in [
        (
            "mutstream_stage_records_in_total",
            "Records into a stage (counting on across mutations that keep its name).",
            false,
        ),
        (
            "mutstream_stage_records_out_total",
            "Records a stage passed on (not filtered, not routed, not windowed).",
            true,
        ),
    ] {
        let mut fam = Family::new(&mut o, name, "counter", help);
        for (k, sh) in m.shards.iter().enumerate() {
            if sh.generation.get() != names.generation {
                continue;
            }
            let shard = k.to_string();
            for (i, st) in names.stages.iter().enumerate().take(sh.stages.len()) {
                let c = &sh.stages[i];
                let v = if out {
                    c.records_out.get()
                } else {
                    c.records_in.get()
                };
                fam.sample(name, &[("stage", st), ("shard", &shard)], v);
            }
        }
    }
    per_sink(
        &mut o,
        m,
        names,
        "mutstream_sink_records_total",
        "Records handed to a sink.",
        |s| s.emitted.get().to_string(),
    );
    {
        let name = "mutstream_sink_dropped_records_total";
        let mut fam = Family::new(
            &mut o,
            name,
            "counter",
            "Records a sink dropped, by reason.",
        );
        for (k, sh) in m.shards.iter().enumerate() {
            let shard = k.to_string();
            for (i, sink) in names.sinks.iter().enumerate() {
                let s = &sh.sinks[i];
                for (reason, v) in [
                    ("full", s.dropped_full.get()),
                    ("shutdown", s.dropped_shutdown.get()),
                    ("disk_full", s.dropped_disk_full.get()),
                    ("too_large", s.dropped_too_large.get()),
                ] {
                    fam.sample(
                        name,
                        &[("sink", sink), ("reason", reason), ("shard", &shard)],
                        v,
                    );
                }
            }
        }
    }
    per_sink(
        &mut o,
        m,
        names,
        "mutstream_sink_blocked_seconds_total",
        "Time a shard waited for room in a sink (on_full = \"block\").",
        |s| format!("{}", s.blocked_ns.get() as f64 / 1e9),
    );
    {
        let name = "mutstream_sink_ring_records";
        let mut fam = Family::new(
            &mut o,
            name,
            "gauge",
            "Records in a shard's ring to a sink thread, not yet given back (journal, blackhole: none).",
        );
        for (k, sh) in m.shards.iter().enumerate() {
            let shard = k.to_string();
            for (i, sink) in names.sinks.iter().enumerate() {
                fam.sample(
                    name,
                    &[("sink", sink), ("shard", &shard)],
                    sh.sinks[i].ring_records.get(),
                );
            }
        }
    }
    Family::new(
        &mut o,
        "mutstream_sink_ring_capacity_records",
        "gauge",
        "The records a shard's ring to a sink may hold ([runtime] ring_capacity).",
    )
    .sample(
        "mutstream_sink_ring_capacity_records",
        &[],
        names.ring_capacity,
    );
    per_sink(
        &mut o,
        m,
        names,
        "mutstream_journal_bytes_total",
        "Bytes appended to a journal.",
        |s| s.journal_bytes.get().to_string(),
    );
    {
        let name = "mutstream_sink_written_bytes_total";
        let mut fam = Family::new(
            &mut o,
            name,
            "counter",
            "Bytes a file or stdout sink wrote.",
        );
        for (i, sink) in names.sinks.iter().enumerate() {
            fam.sample(name, &[("sink", sink)], m.sinks[i].bytes.get());
        }
    }
    per_shard(
        &mut o,
        m,
        "mutstream_shard_generation",
        "gauge",
        "The generation each shard runs.",
        |k, _| acks.get(k).copied().filter(|&g| g != u64::MAX).unwrap_or(0),
    );
    Family::new(
        &mut o,
        "mutstream_generation",
        "gauge",
        "The latest published generation.",
    )
    .sample("mutstream_generation", &[], c.generation);
    {
        let name = "mutstream_mutations_total";
        let mut fam = Family::new(
            &mut o,
            name,
            "counter",
            "Changes to the running pipeline, by result.",
        );
        fam.sample(name, &[("result", "applied")], c.applied);
        fam.sample(name, &[("result", "published")], c.published);
        fam.sample(name, &[("result", "rejected")], c.rejected);
    }
    {
        let name = "mutstream_mutation_ack_seconds";
        let mut fam = Family::new(
            &mut o,
            name,
            "histogram",
            "From publishing a change to the last shard running it.",
        );
        let buckets = if c.ack_buckets.len() == ACK_BUCKETS.len() + 1 {
            c.ack_buckets.clone()
        } else {
            vec![0; ACK_BUCKETS.len() + 1]
        };
        for (i, le) in ACK_BUCKETS.iter().enumerate() {
            fam.sample(
                "mutstream_mutation_ack_seconds_bucket",
                &[("le", &le.to_string())],
                buckets[i],
            );
        }
        let count = buckets[ACK_BUCKETS.len()];
        fam.sample(
            "mutstream_mutation_ack_seconds_bucket",
            &[("le", "+Inf")],
            count,
        );
        fam.sample("mutstream_mutation_ack_seconds_sum", &[], c.ack_sum_seconds);
        fam.sample("mutstream_mutation_ack_seconds_count", &[], count);
    }
    process(&mut o);
    if let Some(l) = latency {
        for (name, help, h) in [
            (
                "mutstream_pipeline_latency_seconds",
                "From a batch's first byte read off its socket to its records handed to the sinks (a journal's committed), per record.",
                &l.all_pipeline,
            ),
            (
                "mutstream_kernel_latency_seconds",
                "UDP: from the kernel's receive timestamp of a datagram to the worker reading it, per record.",
                &l.all_kernel,
            ),
        ] {
            let mut fam = Family::new(&mut o, name, "histogram", help);
            let bucket = format!("{name}_bucket");
            for le in LATENCY_BUCKETS {
                let n = h.count_between(0, (le * 1e9) as u64);
                fam.sample(&bucket, &[("le", &le.to_string())], n);
            }
            fam.sample(&bucket, &[("le", "+Inf")], h.len());
            fam.sample(&format!("{name}_sum"), &[], h.mean() * h.len() as f64 / 1e9);
            fam.sample(&format!("{name}_count"), &[], h.len());
        }
    }
    o
}

/// The standard `process_*` metrics, from /proc/self.
fn process(o: &mut String) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    // Fields after the command name: utime 14, stime 15, starttime 22,
    // rss 24 (1-based numbering of proc(5); index = number - 3).
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    if let (Some(u), Some(s)) = (field(14), field(15)) {
        Family::new(
            o,
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
        )
        .sample("process_cpu_seconds_total", &[], (u + s) / hz);
    }
    if let Some(rss) = field(24) {
        Family::new(
            o,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        )
        .sample("process_resident_memory_bytes", &[], rss * page);
    }
    let boot = std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok());
    if let (Some(start), Some(boot)) = (field(22), boot) {
        Family::new(
            o,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
        )
        .sample("process_start_time_seconds", &[], boot + start / hz);
    }
    if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
        Family::new(
            o,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        )
        .sample("process_open_fds", &[], rd.count());
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn families_are_contiguous_with_help_and_type_first() {
        let m = Metrics::new(2, 1, 1);
        m.shards[0].sources[0].records.add(5);
        m.shards[1].sources[0].records.add(7);
        let names = Names {
            sources: vec!["in \"x\""],
            sinks: vec!["out"],
            stages: vec!["hot", "s2"],
            generation: 0,
            ring_capacity: 65_536,
        };
        let mut c = ControlFigures::default();
        c.observe_ack(0.00003);
        c.observe_ack(0.002);
        let text = render(
            &m,
            &names,
            &[1, 1],
            &c,
            Some(&super::super::latency::ByGeneration::default()),
        );
        let mut seen = std::collections::HashSet::new();
        let mut current = String::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(seen.insert(name.clone()), "{name} twice");
                current = name;
            } else if !l.starts_with('#') {
                assert!(l.starts_with(&current), "{l} outside its family {current}");
            }
        }
        assert!(text.contains("mutstream_records_total{source=\"in \\\"x\\\"\",shard=\"1\"} 7\n"));
        assert!(text.contains("mutstream_mutation_ack_seconds_bucket{le=\"0.00005\"} 1\n"));
        assert!(text.contains("mutstream_mutation_ack_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("mutstream_mutation_ack_seconds_count 2\n"));
    }
}
