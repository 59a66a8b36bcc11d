//! The journal against a model: what was appended is what is read, in
//! order, with its generation and schema, across rolls and reopenings.

use super::tailer::{StartAt, Tailer};
use super::writer::{Options, PartitionWriter, Supply};
use crate::codec::FieldType;
use crate::config::Fsync;
use crate::pipeline::program::OutSchema;
use crate::sink::row::{RowIter, RowValue, encode_values};
use proptest::prelude::*;
use std::path::Path;
use std::sync::Arc;

/// A record as the model keeps it: (seq, generation, schema index, key, text).
type Rec = (u64, u64, usize, u64, String);

fn schemas() -> [Arc<OutSchema>; 2] {
    [
        Arc::new(OutSchema {
            fields: vec![("k".into(), FieldType::U64), ("s".into(), FieldType::Str)],
        }),
        Arc::new(OutSchema {
            fields: vec![
                ("k".into(), FieldType::U64),
                ("name".into(), FieldType::Symbol),
                ("x".into(), FieldType::F64),
            ],
        }),
    ]
}

fn open(dir: &Path, seg: u64) -> PartitionWriter {
    let opts = Options {
        segment_size: seg,
        fsync: Fsync::Never,
    };
    PartitionWriter::open(dir, 0, opts, Supply::Inline)
        .unwrap()
        .0
}

fn append(
    w: &mut PartitionWriter,
    s: &[Arc<OutSchema>; 2],
    si: usize,
    g: u64,
    rows: &[(u64, String)],
) {
    let mut buf = Vec::new();
    for (k, t) in rows {
        match si {
            0 => encode_values(&[RowValue::U64(*k), RowValue::Text(t.as_bytes())], &mut buf),
            _ => encode_values(
                &[
                    RowValue::U64(*k),
                    RowValue::Text(t.as_bytes()),
                    RowValue::F64(*k as f64 / 2.0),
                ],
                &mut buf,
            ),
        }
    }
    w.append(&s[si], g, 1, 2, &buf, rows.len() as u32).unwrap();
}

/// Everything a tailer returns from `start`.
fn read_all(dir: &Path, start: StartAt) -> Vec<Rec> {
    let s = schemas();
    let mut t = Tailer::open(dir, start).unwrap();
    let mut out = Vec::new();
    while let Some(f) = t.next_frame() {
        let si = s
            .iter()
            .position(|x| **x == **f.schema)
            .expect("a known schema");
        for (i, r) in RowIter::new(f.rows, f.schema)
            .enumerate()
            .skip(f.skip as usize)
        {
            let RowValue::U64(k) = r.get(0, FieldType::U64) else {
                panic!("k is set")
            };
            let RowValue::Text(t) = r.get(1, f.schema.fields[1].1) else {
                panic!("text is set")
            };
            if si == 1 {
                assert_eq!(r.get(2, FieldType::F64), RowValue::F64(k as f64 / 2.0));
            }
            out.push((
                f.header.base_seq + i as u64,
                f.header.generation,
                si,
                k,
                String::from_utf8(t.to_vec()).unwrap(),
            ));
        }
    }
    assert!(t.take_events().is_empty());
    out
}

#[derive(Clone, Debug)]
enum Op {
    Append(usize, u64, Vec<(u64, String)>),
    Reopen,
    Read,
    ReadFrom(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2usize, 1..5u64, prop::collection::vec((any::<u64>(), "[a-z]{0,300}"), 1..60))
            .prop_map(|(s, g, r)| Op::Append(s, g, r)),
        1 => Just(Op::Reopen),
        1 => Just(Op::Read),
        1 => any::<u16>().prop_map(Op::ReadFrom),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn reads_return_exactly_what_was_appended(ops in prop::collection::vec(op(), 1..40)) {
        let d = tempfile::tempdir().unwrap();
        let s = schemas();
        // 64 KiB segments: a roll every few appends.
        let mut w = open(d.path(), 64 << 10);
        let mut model: Vec<Rec> = Vec::new();
        for op in ops {
            match op {
                Op::Append(si, g, rows) => {
                    for (k, t) in &rows {
                        model.push((model.len() as u64, g, si, *k, t.clone()));
                    }
                    append(&mut w, &s, si, g, &rows);
                }
                Op::Reopen => {
                    drop(w);
                    w = open(d.path(), 64 << 10);
                    prop_assert_eq!(w.next_seq(), model.len() as u64);
                }
                Op::Read => prop_assert_eq!(read_all(d.path(), StartAt::Oldest), model.clone()),
                Op::ReadFrom(x) => {
                    let from = if model.is_empty() { 0 } else { x as u64 % model.len() as u64 };
                    prop_assert_eq!(read_all(d.path(), StartAt::Seq(from)), model[from as usize..].to_vec());
                }
            }
        }
        prop_assert_eq!(read_all(d.path(), StartAt::Oldest), model);
    }
}

#[test]
fn a_tailer_follows_a_writer_across_rolls() {
    let d = tempfile::tempdir().unwrap();
    let s = schemas();
    let mut w = open(d.path(), 64 << 10);
    let mut t = Tailer::open(d.path(), StartAt::Oldest).unwrap();
    let mut seen = 0u64;
    for round in 0..200u64 {
        let rows: Vec<(u64, String)> = (0..20).map(|i| (round * 20 + i, "x".repeat(100))).collect();
        append(&mut w, &s, 0, 1, &rows);
        while let Some(f) = t.next_frame() {
            for (i, r) in RowIter::new(f.rows, f.schema).enumerate() {
                assert_eq!(f.header.base_seq + i as u64, seen);
                assert_eq!(r.get(0, FieldType::U64), RowValue::U64(seen));
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 4000);
    assert!(w.stats.rolls > 5, "{} rolls", w.stats.rolls);
}

#[test]
fn a_torn_tail_is_cut_and_the_sequence_continues() {
    let d = tempfile::tempdir().unwrap();
    let s = schemas();
    let mut w = open(d.path(), 1 << 20);
    append(&mut w, &s, 0, 1, &[(1, "a".into()), (2, "b".into())]);
    append(&mut w, &s, 0, 1, &[(3, "c".into())]);
    drop(w);
    // Tear the last frame: flip a payload byte.
    let seg = super::segment::list_segments(d.path()).unwrap()[0]
        .1
        .clone();
    let mut b = std::fs::read(&seg).unwrap();
    let (_, scan) = super::format::scan(&b).unwrap();
    let last = *scan.frames.last().unwrap();
    b[last.offset + super::format::FRAME_HEADER + 2] ^= 0xff;
    std::fs::write(&seg, &b).unwrap();
    let (mut w, rec) = PartitionWriter::open(
        d.path(),
        0,
        Options {
            segment_size: 1 << 20,
            fsync: Fsync::Never,
        },
        Supply::Inline,
    )
    .unwrap();
    assert_eq!(rec.next_seq, 2);
    assert!(rec.cut_bytes > 0);
    assert_eq!(rec.corrupt.as_ref().map(|c| c.1), Some(last.offset));
    append(&mut w, &s, 0, 2, &[(4, "d".into())]);
    let got = read_all(d.path(), StartAt::Oldest);
    let keys: Vec<(u64, u64)> = got.iter().map(|r| (r.0, r.3)).collect();
    assert_eq!(keys, vec![(0, 1), (1, 2), (2, 4)]);
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        1 << 20,
        "never shrunk"
    );
}

#[test]
fn an_unusable_segment_is_moved_aside_and_the_journal_opens() {
    let d = tempfile::tempdir().unwrap();
    let s = schemas();
    let mut w = open(d.path(), 64 << 10);
    for i in 0..100 {
        append(&mut w, &s, 0, 1, &[(i, "y".repeat(2000))]);
    }
    drop(w);
    let segs = super::segment::list_segments(d.path()).unwrap();
    let (first, last) = segs.last().unwrap().clone();
    let mut b = std::fs::read(&last).unwrap();
    b[0] ^= 1; // bad magic
    std::fs::write(&last, &b).unwrap();
    let (mut w, rec) = PartitionWriter::open(
        d.path(),
        0,
        Options {
            segment_size: 64 << 10,
            fsync: Fsync::Never,
        },
        Supply::Inline,
    )
    .unwrap();
    assert_eq!(rec.renamed_aside.len(), 1);
    assert_eq!(w.next_seq(), first);
    append(&mut w, &s, 0, 1, &[(1000, "z".into())]);
    let got = read_all(d.path(), StartAt::Oldest);
    assert_eq!(got.len() as u64, first + 1);
    assert_eq!(got.last().unwrap().3, 1000);
}

#[test]
fn rows_larger_than_a_segment_are_dropped_and_counted() {
    let d = tempfile::tempdir().unwrap();
    let s = schemas();
    let mut w = open(d.path(), 64 << 10);
    append(
        &mut w,
        &s,
        0,
        1,
        &[(1, "a".into()), (2, "b".repeat(70_000)), (3, "c".into())],
    );
    assert_eq!(w.stats.too_large, 1);
    let keys: Vec<u64> = read_all(d.path(), StartAt::Oldest)
        .iter()
        .map(|r| r.3)
        .collect();
    assert_eq!(keys, vec![1, 3]);
}
