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

mod common;

use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
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
