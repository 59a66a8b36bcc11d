//! The journal under storage faults (RELIABILITY.md tests 2 and 3), on
//! real files: power loss with pages landing in any order, and a matrix
//! of seeded corruptions. Whatever the damage, opening never fails or
//! panics, and readers return a prefix of what was written, never a record
//! that was not.
//!
//! `JOURNAL_IMAGES` (default 300) and `JOURNAL_FAULTS` (default 2000) set
//! the sizes; tools/heavy-tests.sh runs 1 000 and 10 000.

use mutstream::codec::FieldType;
use mutstream::config::Fsync;
use mutstream::journal::tailer::{StartAt, Tailer};
use mutstream::journal::writer::{Options, PartitionWriter, Supply};
use mutstream::loadgen::Rng;
use mutstream::pipeline::program::OutSchema;
use mutstream::sink::row::{RowIter, RowValue, encode_values};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

const SEG: u64 = 128 << 10;
const PAGE: usize = 4096;

/// Uniform in `[0, n)`.
fn below(r: &mut Rng, n: u64) -> u64 {
    r.next_u64() % n.max(1)
}

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn schema() -> Arc<OutSchema> {
    Arc::new(OutSchema {
        fields: vec![("k".into(), FieldType::U64), ("s".into(), FieldType::Str)],
    })
}

/// Record `i` of the reference stream: its text length varies so frames
/// straddle pages and segments at every offset.
fn text(i: u64) -> String {
    let n = (i * 37 % 300) as usize;
    (0..n)
        .map(|j| (b'a' + ((i as usize + j) % 26) as u8) as char)
        .collect()
}

fn open(dir: &Path) -> PartitionWriter {
    let opts = Options {
        segment_size: SEG,
        fsync: Fsync::Never,
    };
    PartitionWriter::open(dir, 0, opts, Supply::Inline)
        .unwrap_or_else(|e| panic!("open must succeed whatever the damage: {e}"))
        .0
}

/// Appends records `from..to` as one frame.
fn append(w: &mut PartitionWriter, s: &Arc<OutSchema>, from: u64, to: u64) {
    let mut buf = Vec::new();
    for i in from..to {
        let t = text(i);
        encode_values(&[RowValue::U64(i), RowValue::Text(t.as_bytes())], &mut buf);
    }
    w.append(s, 1, 7, 9, &buf, (to - from) as u32).unwrap();
}

/// Reads the partition: the keys in order, checking every record against
/// the reference and that sequences equal keys.
fn read_checked(dir: &Path) -> Vec<u64> {
    let mut t = Tailer::open(dir, StartAt::Oldest).unwrap();
    let mut keys = Vec::new();
    while let Some(f) = t.next_frame() {
        for (i, r) in RowIter::new(f.rows, f.schema).enumerate() {
            let seq = f.header.base_seq + i as u64;
            let RowValue::U64(k) = r.get(0, FieldType::U64) else {
                panic!("seq {seq}: k missing: an invented record")
            };
            let RowValue::Text(s) = r.get(1, FieldType::Str) else {
                panic!("seq {seq}: s missing: an invented record")
            };
            assert_eq!(k, seq, "seq {seq} holds record {k}");
            assert_eq!(s, text(k).as_bytes(), "record {k}: its text changed");
            keys.push(k);
        }
    }
    keys
}

/// Every file of a directory (names → bytes).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn write_image(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for (n, b) in files {
        std::fs::write(dir.join(n), b).unwrap();
    }
}

/// Power loss: the last synced state is on disk; every page written since
/// may have reached it or not, independently, and a page may be torn at
/// 512-byte sectors. Recovery keeps a prefix that holds everything synced,
/// invents nothing, and writing continues after it.
#[test]
fn power_loss_keeps_every_synced_record_and_a_prefix() {
    let images = env_n("JOURNAL_IMAGES", 300);
    let s = schema();
    let base = tempfile::tempdir().unwrap();
    let live = base.path().join("live");
    let mut rng = Rng::new(0x9e37);
    let mut w = open(&live);
    let mut n = 0u64;
    let mut durable = snapshot(&live);
    let mut synced = 0u64;
    // Enough for several rolls; sync points every few frames and at rolls,
    // as `fsync = "interval"` does.
    while n < 6_000 {
        let k = 1 + below(&mut rng, 40);
        let rolls = w.stats.rolls;
        append(&mut w, &s, n, n + k);
        if w.stats.rolls != rolls && below(&mut rng, 2) == 0 {
            // The roll synced the old segment; what this call put in the
            // new one is not synced. (Half the time the sync of a retired
            // segment has not happened yet when the power goes: the new
            // segment may be on disk while the old one's tail is not.)
            durable = snapshot(&live);
            synced = n;
        }
        n += k;
        if below(&mut rng, 8) == 0 {
            w.sync().unwrap();
            durable = snapshot(&live);
            synced = n;
        }
    }
    // Then the power goes after unsynced frames that straddle a roll.
    let rolls = w.stats.rolls;
    while w.stats.rolls == rolls {
        let k = 1 + below(&mut rng, 40);
        append(&mut w, &s, n, n + k);
        n += k;
    }
    append(&mut w, &s, n, n + 5);
    n += 5;
    assert!(w.stats.rolls >= 4, "{} rolls", w.stats.rolls);
    let last = snapshot(&live);
    drop(w);
    let img = base.path().join("img");
    let mut kept = Vec::new();
    for _ in 0..images {
        let mut files = BTreeMap::new();
        for (name, new) in &last {
            let old = durable.get(name);
            if old.is_none() && below(&mut rng, 4) == 0 {
                continue; // its directory entry never reached the disk
            }
            let zeros = vec![0u8; new.len()];
            let old = old.unwrap_or(&zeros);
            let mut b = old.clone();
            b.resize(new.len(), 0);
            for p in (0..new.len()).step_by(PAGE) {
                let end = (p + PAGE).min(new.len());
                if b[p..end] == new[p..end] {
                    continue;
                }
                match below(&mut rng, 5) {
                    0 | 1 => {}                                       // old page
                    2 | 3 => b[p..end].copy_from_slice(&new[p..end]), // new page
                    _ => {
                        // Torn: each 512-byte sector old or new.
                        for q in (p..end).step_by(512) {
                            let e = (q + 512).min(end);
                            if below(&mut rng, 2) == 0 {
                                b[q..e].copy_from_slice(&new[q..e]);
                            }
                        }
                    }
                }
            }
            files.insert(name.clone(), b);
        }
        write_image(&img, &files);
        let mut w = open(&img);
        let keys = read_checked(&img);
        assert!(
            keys.len() as u64 >= synced,
            "{} records after recovery, {synced} were synced",
            keys.len()
        );
        assert!(keys.iter().enumerate().all(|(i, &k)| k == i as u64));
        // The sequence continues where the prefix ends.
        let m = keys.len() as u64;
        assert_eq!(w.next_seq(), m);
        append(&mut w, &s, m, m + 3);
        drop(w);
        assert_eq!(read_checked(&img).len() as u64, m + 3);
        kept.push(m);
    }
    kept.sort_unstable();
    eprintln!(
        "power loss: {images} images, {synced} synced of {n} written; records kept min {} median {} max {}",
        kept[0],
        kept[kept.len() / 2],
        kept[kept.len() - 1]
    );
}

/// The kinds of damage of RELIABILITY.md test 3.
#[derive(Clone, Copy, Debug)]
enum Fault {
    BitFlip,
    ZeroPage,
    Truncate,
    GarbagePastTail,
    JunkAfterShorterWrite,
    MisdirectedPage,
}

const FAULTS: [Fault; 6] = [
    Fault::BitFlip,
    Fault::ZeroPage,
    Fault::Truncate,
    Fault::GarbagePastTail,
    Fault::JunkAfterShorterWrite,
    Fault::MisdirectedPage,
];

/// Seeded faults on a closed journal: opening never fails, readers never
/// return a record that was not written (each is checked against the
/// reference by sequence), and what they return is what survives.
#[test]
fn corruption_matrix_never_returns_a_bad_record() {
    let faults = env_n("JOURNAL_FAULTS", 2_000);
    let s = schema();
    let base = tempfile::tempdir().unwrap();
    let live = base.path().join("live");
    let mut w = open(&live);
    let mut rng = Rng::new(0xc0ff);
    let mut n = 0u64;
    while n < 3_000 {
        let k = 1 + below(&mut rng, 30);
        append(&mut w, &s, n, n + k);
        n += k;
    }
    drop(w);
    let clean = snapshot(&live);
    let segs: Vec<String> = clean
        .keys()
        .filter(|k| k.ends_with(".seg"))
        .cloned()
        .collect();
    assert!(segs.len() >= 3, "{segs:?}");
    let img = base.path().join("img");
    let mut salvaged = 0u64;
    let mut per_kind = [0u64; 6];
    for i in 0..faults {
        let kind = FAULTS[i % FAULTS.len()];
        per_kind[i % FAULTS.len()] += 1;
        let mut files = clean.clone();
        let victim = segs[below(&mut rng, segs.len() as u64) as usize].clone();
        let other = segs[below(&mut rng, segs.len() as u64) as usize].clone();
        let donor = files[&other].clone();
        let b = files.get_mut(&victim).unwrap();
        // Where the victim's frames end (its first all-zero 8 bytes after
        // the header, good enough to aim tail faults).
        let end = (64..b.len())
            .step_by(8)
            .find(|&o| b[o..o + 8] == [0; 8])
            .unwrap_or(b.len());
        match kind {
            Fault::BitFlip => {
                let at = below(&mut rng, end as u64) as usize;
                b[at] ^= 1 << below(&mut rng, 8);
            }
            Fault::ZeroPage => {
                let p = below(&mut rng, end.div_ceil(PAGE) as u64) as usize * PAGE;
                let e = (p + PAGE).min(b.len());
                b[p..e].fill(0);
            }
            Fault::Truncate => {
                let at = below(&mut rng, b.len() as u64) as usize;
                b.truncate(at);
            }
            Fault::GarbagePastTail => {
                let at = end + below(&mut rng, 64) as usize * 8;
                let len = (1 + below(&mut rng, 4096) as usize).min(b.len().saturating_sub(at));
                for x in &mut b[at..at + len] {
                    *x = below(&mut rng, 256) as u8;
                }
            }
            Fault::JunkAfterShorterWrite => {
                // A longer frame's bytes left past the end, as if a longer
                // write was cut short and a shorter one took its place.
                let from = 64 + below(&mut rng, ((end - 64) / 8) as u64) as usize * 8;
                let len = (56 + below(&mut rng, 2048) as usize).min(end - from);
                let junk = b[from..from + len].to_vec();
                let at = (end + 8 * below(&mut rng, 4) as usize).min(b.len() - len);
                b[at..at + len].copy_from_slice(&junk);
            }
            Fault::MisdirectedPage => {
                let from = below(&mut rng, (donor.len() / PAGE) as u64) as usize * PAGE;
                let to = below(&mut rng, end.div_ceil(PAGE) as u64) as usize * PAGE;
                let e = (to + PAGE).min(b.len());
                b[to..e].copy_from_slice(&donor[from..from + (e - to)]);
            }
        }
        write_image(&img, &files);
        // Opening recovers, whatever the damage; writing continues.
        let mut w = open(&img);
        let m = w.next_seq();
        append(&mut w, &s, m, m + 1);
        drop(w);
        // Readers check every record they return against the reference.
        let mut t = Tailer::open(&img, StartAt::Oldest).unwrap();
        let mut got = 0u64;
        while let Some(f) = t.next_frame() {
            for (j, r) in RowIter::new(f.rows, f.schema).enumerate() {
                let seq = f.header.base_seq + j as u64;
                let k = match r.get(0, FieldType::U64) {
                    RowValue::U64(k) => k,
                    v => panic!("{kind:?} on {victim}: seq {seq} k = {v:?}"),
                };
                assert_eq!(k, seq, "{kind:?} on {victim}: seq {seq} holds {k}");
                let want = text(k);
                assert_eq!(
                    r.get(1, FieldType::Str),
                    RowValue::Text(want.as_bytes()),
                    "{kind:?} on {victim}: record {k} changed"
                );
                got += 1;
            }
        }
        let _ = t.take_events();
        salvaged += got.min(n);
    }
    eprintln!(
        "corruption matrix: {faults} faults ({per_kind:?} per kind), 0 bad records returned, salvaged {:.1}% of the ideal",
        100.0 * salvaged as f64 / (n as f64 * faults as f64)
    );
}
