//! Journal append throughput against a plain copy into the same kind of
//! mapping, and writer→tailer latency.
//!
//! * `append/<row>B`: one data frame of 1024 rows of 32 or 100 bytes per
//!   iteration (copy, CRC32C, header, release store) into a segment whose
//!   pages are already faulted in, as the journal thread keeps them for
//!   the worker; each sample gets a fresh segment big enough for it.
//! * `memcpy/<row>B`: the same bytes copied into a populated shared file
//!   mapping of the same size: the ceiling for any append.
//! * `append+thread/<row>B`: the whole path as `run` has it, with the
//!   journal thread reserving, populating and retiring 256 MiB segments
//!   (retention at 1 GiB so it runs in bounded space); on tmpfs the
//!   thread's page allocation competes with the writer for the 2 cores.
//!
//! Files go to /dev/shm where it exists (the page cache without a disk
//! behind it).
//! * `latency`: a writer appends one-row frames every 20 µs into a faulted-in
//!   segment; a tailer thread spins on the commit word; the time from before
//!   the append to the tailer holding the row, as an HdrHistogram (p50,
//!   p99, p99.9).

use criterion::{Criterion, Throughput};
use mutstream::codec::FieldType;
use mutstream::config::{Fsync, OnFull, SinkDef, SinkKind};
use mutstream::journal::tailer::{StartAt, Tailer};
use mutstream::journal::writer::{Options, PartitionWriter, Supply};
use mutstream::metrics::Metrics;
use mutstream::pipeline::program::OutSchema;
use mutstream::sink::Lifecycle;
use mutstream::sink::row::{RowValue, encode_values};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const ROWS: usize = 1024;
const SEGMENT: u64 = 256 << 20;

fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

/// 1024 rows of exactly `row` bytes: a u64, then text filling the rest.
fn rows(row: usize) -> (Arc<OutSchema>, Vec<u8>) {
    let schema = Arc::new(OutSchema {
        fields: vec![("k".into(), FieldType::U64), ("s".into(), FieldType::Str)],
    });
    let fixed = 4 + 1 + 16;
    let text = vec![b'x'; row - fixed];
    let mut buf = Vec::new();
    for k in 0..ROWS as u64 {
        encode_values(&[RowValue::U64(k), RowValue::Text(&text)], &mut buf);
    }
    assert_eq!(buf.len(), ROWS * row);
    (schema, buf)
}

/// A journal sink opened as `run` opens it, with its journal thread.
struct Journal {
    writer: PartitionWriter,
    life: Arc<Lifecycle>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Journal {
    fn open(max_bytes: Option<u64>) -> Journal {
        let dir = scratch_dir();
        let def = SinkDef {
            name: "bench".into(),
            kind: SinkKind::Journal,
            path: Some(dir.path().join("j")),
            on_full: OnFull::Block,
            segment_size: SEGMENT,
            fsync: Fsync::Never,
            fsync_interval: Duration::from_millis(100),
            max_bytes,
            max_age: None,
            line: 0,
        };
        let (mut writers, svc, _) = mutstream::journal::open(&def, 1).unwrap();
        let metrics = Arc::new(Metrics::new(1, 0, 1));
        let life = Arc::new(Lifecycle::default());
        let l = life.clone();
        let thread = std::thread::spawn(move || {
            mutstream::journal::run_service(vec![(svc, 0)], &metrics, &l)
        });
        Journal {
            writer: writers.remove(0),
            life,
            thread: Some(thread),
            _dir: dir,
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.life.workers_done.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A fresh partition whose one segment holds `bytes` and is faulted in.
fn populated_writer(bytes: u64) -> (PartitionWriter, tempfile::TempDir) {
    let dir = scratch_dir();
    let opts = Options {
        segment_size: bytes.next_multiple_of(1 << 20).max(1 << 20),
        fsync: Fsync::Never,
    };
    let (w, _) = PartitionWriter::open(dir.path(), 0, opts, Supply::Inline).unwrap();
    let seg = w.shared().1.expect("a segment");
    seg.populate(0, seg.len());
    (w, dir)
}

/// A populated shared file mapping of `bytes`.
fn populated_map(bytes: u64) -> (memmap2::MmapMut, tempfile::TempDir) {
    let dir = scratch_dir();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("plain"))
        .unwrap();
    f.set_len(bytes).unwrap();
    // SAFETY: a private file of this bench, mapped once, written only
    // through this mapping.
    let map = unsafe { memmap2::MmapMut::map_mut(&f) }.unwrap();
    // Faulted in writable, exactly as the journal thread does for segments
    // (MAP_POPULATE would only read-fault a shared mapping).
    map.advise(memmap2::Advice::PopulateWrite).unwrap();
    (map, dir)
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("journal");
    for row in [32usize, 100] {
        let (schema, buf) = rows(row);
        g.throughput(Throughput::Bytes(buf.len() as u64));
        let frame = mutstream::journal::format::frame_len(buf.len()) as u64;
        g.bench_function(format!("append/{row}B"), |b| {
            b.iter_custom(|iters| {
                let (mut w, _dir) = populated_writer((iters + 2) * frame + (1 << 16));
                let t0 = Instant::now();
                for _ in 0..iters {
                    w.append(&schema, 1, 0, 0, black_box(&buf), ROWS as u32)
                        .unwrap();
                }
                t0.elapsed()
            })
        });
        g.bench_function(format!("memcpy/{row}B"), |b| {
            b.iter_custom(|iters| {
                let (mut map, _dir) = populated_map((iters + 2) * frame + (1 << 16));
                let t0 = Instant::now();
                let mut at = 0usize;
                for _ in 0..iters {
                    map[at..at + buf.len()].copy_from_slice(black_box(&buf));
                    at += frame as usize;
                }
                t0.elapsed()
            })
        });
        let mut j = Journal::open(Some(1 << 30));
        g.bench_function(format!("append+thread/{row}B"), |b| {
            b.iter(|| {
                j.writer
                    .append(&schema, 1, 0, 0, black_box(&buf), ROWS as u32)
                    .unwrap();
            })
        });
    }
    g.finish();
}

/// Writer→tailer latency: prints p50, p99, p99.9 and max in ns.
fn latency(samples: u64) {
    // A populated segment for all samples: the two threads measured and
    // nothing else on the 2 cores.
    let (mut w, _keep) = populated_writer(samples * 256 + (1 << 20));
    let dir = w.dir().to_path_buf();
    let (schema, buf) = rows(32);
    let one = &buf[..32];
    let (tx, rx) = std::sync::mpsc::channel();
    let tailer = std::thread::spawn(move || {
        let mut t = Tailer::open(&dir, StartAt::Oldest).unwrap();
        let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        let mut n = 0;
        while n < samples {
            if let Some(f) = t.next_frame() {
                let now = mutstream::sys::mono_ns();
                h.record(now - f.header.ingest_ns).unwrap();
                n += 1;
            } else {
                std::hint::spin_loop();
            }
        }
        tx.send(h).unwrap();
    });
    for _ in 0..samples {
        let t0 = mutstream::sys::mono_ns();
        // The frame's ingest_ns carries the monotonic start time.
        w.append(&schema, 1, t0, 0, one, 1).unwrap();
        while mutstream::sys::mono_ns() - t0 < 20_000 {
            std::hint::spin_loop();
        }
    }
    let h = rx.recv().unwrap();
    tailer.join().unwrap();
    println!(
        "journal/latency writer->tailer ({samples} one-row frames, 20 us apart): p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    append(&mut c);
    let test_mode = !std::env::args().any(|a| a == "--bench");
    latency(if test_mode { 1_000 } else { 200_000 });
    c.final_summary();
}
