//! No allocation per record in steady state, proven with a counting global
//! allocator.
//!
//! How: this test binary installs an allocator that counts every
//! allocation in the process. After a warm-up (pools, arenas and the
//! symbol table reach their working size), the counter is read, 200 000
//! more records are sent over a real TCP connection through decode, a
//! filter + eval chain and a file sink, and the counter is read again. The
//! sender writes pre-encoded bytes and the test thread only polls atomics,
//! so the difference is the appliance's own allocations for those records.
//!
//! Generation switches are measured on the worker threads alone (named
//! `mutstream-w*`): the control side compiles and builds each generation,
//! the workers only move pointers, so 100 switches under load must not
//! allocate on a worker at all (an allocation there can contend for an
//! allocator arena lock, the one way a worker could end in `futex`). The
//! receive buffer ring is kept tiny there, so receives run out of buffers
//! and are re-armed all the time: where a receive cuts the stream and when
//! it runs dry depend on timing, and neither may reach the allocator.
//! When it fails, the test prints the stack of each worker allocation.

mod common;

use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// Allocations made on worker threads.
static WORKER_ALLOCS: AtomicU64 = AtomicU64::new(0);
/// While set, each worker allocation's stack is kept in `STACKS`.
static TRACING: AtomicBool = AtomicBool::new(false);
static STACKS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

thread_local! {
    /// Set while this thread captures a stack: its own allocations are
    /// the tracer's, not the appliance's.
    static CAPTURING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// 0: not yet known, 1: a worker thread, 2: another thread.
    static KIND: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

/// Counts an allocation, and on worker threads also as a worker's. Reads
/// the thread's name with prctl into a stack buffer: no allocation here.
fn count() {
    if CAPTURING.with(|c| c.get()) {
        return;
    }
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    let kind = KIND.with(|k| {
        if k.get() == 0 {
            let mut name = [0u8; 16];
            // SAFETY: PR_GET_NAME writes at most 16 bytes into `name`.
            unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
            k.set(if name.starts_with(b"mutstream-w") {
                1
            } else {
                2
            });
        }
        k.get()
    });
    if kind == 1 {
        WORKER_ALLOCS.fetch_add(1, Ordering::Relaxed);
        if TRACING.load(Ordering::Relaxed) {
            CAPTURING.with(|c| c.set(true));
            let stack = std::backtrace::Backtrace::force_capture().to_string();
            STACKS.lock().unwrap_or_else(|e| e.into_inner()).push(stack);
            CAPTURING.with(|c| c.set(false));
        }
    }
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// The counter is process-wide: one measurement at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn steady_state(wire: Wire, pipeline: &str) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const WARM: u64 = 100_000;
    const N: u64 = 200_000;
    let mut h = Harness::start(&wire.config(1, pipeline, ""));
    let mut s = TcpStream::connect(h.addr("in")).unwrap();
    let mut warm = Vec::new();
    let mut recs = Vec::new();
    for q in 0..WARM {
        wire.record(0, q, &mut recs);
    }
    wire.frame(&recs, &mut warm);
    let mut steady = Vec::new();
    recs.clear();
    for q in WARM..WARM + N {
        wire.record(0, q, &mut recs);
    }
    wire.frame(&recs, &mut steady);
    s.write_all(&warm).unwrap();
    h.wait_records(WARM, Duration::from_secs(60));
    // Let the sink drain the warm-up so its buffers are at size too.
    std::thread::sleep(Duration::from_millis(300));
    let before = ALLOCS.load(Ordering::SeqCst);
    s.write_all(&steady).unwrap();
    h.wait_records(WARM + N, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    let after = ALLOCS.load(Ordering::SeqCst);
    drop(s);
    h.shutdown();
    let n = after - before;
    eprintln!("{wire:?}: {n} allocations for {N} records in steady state");
    assert!(
        n < 16,
        "{n} allocations for {N} records: the hot path allocates"
    );
}

#[test]
fn binary_filter_eval_file_sink_allocates_nothing_per_record() {
    steady_state(
        Wire::BinaryFixed,
        "filter price > 50.0 | eval notional = price * qty, big = notional > 1000.0 | to out",
    );
}

#[test]
fn json_symbols_strings_allocate_nothing_per_record() {
    steady_state(
        Wire::JsonTcp,
        "filter temp > 0.0 | eval site_up = upper(site), d = len(device) | to out",
    );
}

#[test]
fn lp_allocates_nothing_per_record() {
    steady_state(Wire::LpTcp, "eval t2 = temp * 2.0 | to out");
}

#[test]
fn csv_allocates_nothing_per_record() {
    steady_state(Wire::CsvTcp, "filter ok == true | to out");
}

/// 100 generation switches while records flow through 2 shards into a
/// journal the workers append to and a file sink: no allocation on a
/// worker (after a warm-up of records and switches that brings pools,
/// batches and the journal's schema table to size). The pipeline looks
/// symbols up in a table (whose memo slots a switch must carry or reuse,
/// not grow again), with the running plan's tables handed to each compile
/// as the control plane does.
#[test]
fn generation_switches_allocate_nothing_on_the_workers() {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let wire = Wire::BinaryFixed;
    let pipeline = |k: u64| {
        format!(
            "filter price > {k}.0 - {k}.0 and symbol in @sectors \
             | enrich @sectors on symbol select sector | eval g = {k} | tee j | to out"
        )
    };
    let rows: Vec<String> = (0..1000)
        .map(|k| format!("{{ symbol = {k}, sector = \"s{}\" }}", k % 7))
        .collect();
    let table = format!(
        "[tables.sectors]\nkey = {{ symbol = \"u64\" }}\ncolumns = {{ sector = \"symbol\" }}\nrows = [{}]\n",
        rows.join(", ")
    );
    let cfg = wire.config(
        2,
        &pipeline(1),
        "recv_buffers = 2\nrecv_buffer_size = \"4KiB\"",
    ) + "[[sink]]\nname = \"j\"\nkind = \"journal\"\npath = \"{DIR}/j\"\n"
        + &table;
    let mut h = Harness::start(&cfg);
    let addr = h.addr("in");
    // Four connections: both shards get some (SO_REUSEPORT spreads them).
    let mut socks: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let chunk = |c: u64, from: u64, n: u64| {
        let mut recs = Vec::new();
        for q in from..from + n {
            wire.record(c, q, &mut recs);
        }
        recs
    };
    let mut sent = 0u64;
    let mut running: Option<mutstream::pipeline::Plan> = None;
    let mut round = |socks: &mut [TcpStream], h: &mut Harness, from: u64, gens: u64| {
        for g in 0..gens {
            for (c, s) in socks.iter_mut().enumerate() {
                s.write_all(&chunk(c as u64, from + g * 500, 500)).unwrap();
            }
            let app = h.app();
            let next = app.generation() + 1;
            let cfg = app.config().clone();
            let plan = mutstream::pipeline::compile_reusing(
                &cfg,
                &pipeline(next),
                "g.mts",
                0,
                &cfg.params,
                running.as_ref(),
            )
            .unwrap();
            running = Some(plan.clone());
            let id = app.publish(plan).unwrap();
            app.wait_acked(id, Duration::from_secs(5)).unwrap();
            app.reclaim();
        }
        gens * 500 * socks.len() as u64
    };
    sent += round(&mut socks, &mut h, 0, 40);
    h.wait_records(sent, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    let before = WORKER_ALLOCS.load(Ordering::SeqCst);
    TRACING.store(true, Ordering::SeqCst);
    sent += round(&mut socks, &mut h, 40 * 500, 100);
    h.wait_records(sent, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    let n = WORKER_ALLOCS.load(Ordering::SeqCst) - before;
    TRACING.store(false, Ordering::SeqCst);
    for stack in STACKS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        eprintln!("a worker allocated here:\n{stack}");
    }
    let switches = h.app().metrics().sum(|m| m.generation_switches.get());
    drop(socks);
    h.shutdown();
    eprintln!("{n} allocations on the workers across 100 generation switches ({switches} in all)");
    assert_eq!(n, 0, "a worker allocated during generation switches");
}
