//! `mutstream read`: print journal records as JSON lines or CSV, with
//! `_gen`, `_shard`, `_seq`, `_ingest_ns`, `_commit_ns` (SPEC §2, §6).

use super::segment::list_partitions;
use super::tailer::{StartAt, Tailer};
use crate::codec::FieldType;
use crate::pipeline::program::OutSchema;
use crate::sink::json;
use crate::sink::row::{RowIter, RowValue, RowView};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Output encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

/// What to read and how.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    pub dir: PathBuf,
    pub follow: bool,
    /// Only this partition, from this sequence.
    pub from: Option<(u32, u64)>,
    /// Records committed at or after this time (ns since the epoch).
    pub since: Option<u64>,
    pub merge: bool,
    pub format: Format,
}

/// Parses `SHARD:SEQ`.
///
/// # Errors
/// A one-line description of the expected form.
pub fn parse_from(s: &str) -> Result<(u32, u64), String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("--from {s:?}: expected SHARD:SEQ, e.g. 0:1000"))?;
    let shard = a
        .parse()
        .map_err(|_| format!("--from {s:?}: {a:?} is not a shard number"))?;
    let seq = b
        .parse()
        .map_err(|_| format!("--from {s:?}: {b:?} is not a sequence number"))?;
    Ok((shard, seq))
}

/// Parses an RFC 3339 time or a duration back from now (`10m`, `2h`).
///
/// # Errors
/// A one-line description of the accepted forms.
pub fn parse_since(s: &str, now_ns: u64) -> Result<u64, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now_ns.saturating_sub(d.as_nanos() as u64));
    }
    // A numeric offset (`+01:00`): parse the local part as UTC, then shift.
    let (base, offset_s) = match s.len().checked_sub(6).map(|i| s.split_at(i)) {
        Some((b, o))
            if b.contains('T')
                && (o.starts_with('+') || o.starts_with('-'))
                && o.as_bytes()[3] == b':' =>
        {
            let h: i64 = o[1..3]
                .parse()
                .map_err(|_| format!("--since {s:?}: bad offset"))?;
            let m: i64 = o[4..6]
                .parse()
                .map_err(|_| format!("--since {s:?}: bad offset"))?;
            let sign = if o.starts_with('-') { -1 } else { 1 };
            (format!("{b}Z"), sign * (h * 3600 + m * 60))
        }
        _ => (s.to_string(), 0),
    };
    match humantime::parse_rfc3339_weak(&base) {
        Ok(t) => {
            let utc = t
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64);
            Ok((utc - offset_s * 1_000_000_000).max(0) as u64)
        }
        Err(_) => Err(format!(
            "--since {s:?}: expected an RFC 3339 time (2026-11-30T12:00:00Z) or a duration back from now (10m, 2h)"
        )),
    }
}

/// A partition being read.
struct Part {
    shard: u32,
    tailer: Tailer,
}

/// Writes records to `out` until the journal is exhausted (or, with
/// `follow`, until `stop` is set). Gaps and corrupt frames go to stderr.
/// Returns the records printed.
///
/// # Errors
/// The directory is not a journal, or writing `out` fails (a closed pipe
/// ends the read quietly: the caller checks the error kind).
pub fn read(o: &ReadOptions, out: &mut dyn Write, stop: &AtomicBool) -> std::io::Result<u64> {
    if !o.dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{}: no journal here (not a directory)", o.dir.display()),
        ));
    }
    let start = |shard: u32| match (o.from, o.since) {
        (Some((s, q)), _) if s == shard => StartAt::Seq(q),
        (_, Some(t)) => StartAt::Time(t),
        _ => StartAt::Oldest,
    };
    let mut parts: Vec<Part> = Vec::new();
    let open_new = |parts: &mut Vec<Part>| -> std::io::Result<()> {
        for (k, dir) in list_partitions(&o.dir)? {
            if o.from.is_some_and(|(s, _)| s != k) || parts.iter().any(|p| p.shard == k) {
                continue;
            }
            parts.push(Part {
                shard: k,
                tailer: Tailer::open(&dir, start(k))?,
            });
        }
        Ok(())
    };
    open_new(&mut parts)?;
    if parts.is_empty() && !o.follow {
        let what = match o.from {
            Some((s, _)) => format!("no partition for shard {s}"),
            None => "no partitions (shard-N directories)".into(),
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{}: {what}", o.dir.display()),
        ));
    }
    let mut w = Printer::new(o.format);
    let mut n = 0u64;
    if o.merge {
        n += merged(&mut parts, o, out, &mut w, stop, &open_new)?;
    } else if !o.follow {
        for p in &mut parts {
            n += drain(p, out, &mut w)?;
        }
    } else {
        let mut last_list = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let mut got = 0;
            for p in &mut parts {
                got += drain(p, out, &mut w)?;
            }
            n += got;
            if got == 0 {
                out.flush()?;
                std::thread::sleep(Duration::from_millis(1));
            }
            if last_list.elapsed() >= Duration::from_secs(1) {
                last_list = std::time::Instant::now();
                open_new(&mut parts)?;
            }
        }
    }
    out.flush()?;
    Ok(n)
}

/// Prints everything partition `p` has now.
fn drain(p: &mut Part, out: &mut dyn Write, w: &mut Printer) -> std::io::Result<u64> {
    let mut n = 0;
    while let Some(f) = p.tailer.next_frame() {
        let h = f.header;
        for (i, r) in RowIter::new(f.rows, f.schema)
            .enumerate()
            .skip(f.skip as usize)
        {
            let meta = Meta {
                generation: h.generation,
                shard: p.shard,
                seq: h.base_seq + i as u64,
                ingest_ns: h.ingest_ns,
                commit_ns: h.commit_ns,
            };
            w.record(out, f.schema, &r, &meta)?;
            n += 1;
        }
    }
    report(p);
    Ok(n)
}

fn report(p: &mut Part) {
    for e in p.tailer.take_events() {
        eprintln!("mutstream read: shard {}: {e}", p.shard);
    }
}

/// A frame copied out of its tailer, waiting for its turn in a merge.
struct Held {
    schema: Arc<OutSchema>,
    header: super::format::FrameHeader,
    skip: u32,
    rows: Vec<u8>,
}

/// By ingest time across partitions, a frame at a time (records of a
/// frame share their ingest time). Following, a partition with nothing
/// new for 100 ms does not hold the others back.
fn merged(
    parts: &mut Vec<Part>,
    o: &ReadOptions,
    out: &mut dyn Write,
    w: &mut Printer,
    stop: &AtomicBool,
    open_new: &dyn Fn(&mut Vec<Part>) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let mut heads: Vec<Option<Held>> = parts.iter().map(|_| None).collect();
    let mut idle_since: Vec<Option<std::time::Instant>> = parts.iter().map(|_| None).collect();
    let mut n = 0;
    let mut last_list = std::time::Instant::now();
    loop {
        for (i, p) in parts.iter_mut().enumerate() {
            if heads[i].is_none() {
                if let Some(f) = p.tailer.next_frame() {
                    heads[i] = Some(Held {
                        schema: f.schema.clone(),
                        header: f.header,
                        skip: f.skip,
                        rows: f.rows.to_vec(),
                    });
                    idle_since[i] = None;
                } else if idle_since[i].is_none() {
                    idle_since[i] = Some(std::time::Instant::now());
                }
                report(p);
            }
        }
        let waiting = heads.iter().zip(&idle_since).any(|(h, idle)| {
            h.is_none()
                && o.follow
                && idle.is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        });
        let pick = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|h| (h.header.ingest_ns, i)))
            .min();
        match pick {
            Some((_, i)) if !waiting => {
                let h = heads[i].take().expect("picked");
                for (j, r) in RowIter::new(&h.rows, &h.schema)
                    .enumerate()
                    .skip(h.skip as usize)
                {
                    let meta = Meta {
                        generation: h.header.generation,
                        shard: parts[i].shard,
                        seq: h.header.base_seq + j as u64,
                        ingest_ns: h.header.ingest_ns,
                        commit_ns: h.header.commit_ns,
                    };
                    w.record(out, &h.schema, &r, &meta)?;
                    n += 1;
                }
            }
            None if !o.follow => return Ok(n),
            _ => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(n);
                }
                out.flush()?;
                std::thread::sleep(Duration::from_millis(1));
                if last_list.elapsed() >= Duration::from_secs(1) {
                    last_list = std::time::Instant::now();
                    open_new(parts)?;
                    heads.resize_with(parts.len(), || None);
                    idle_since.resize(parts.len(), None);
                }
            }
        }
    }
}

struct Meta {
    generation: u64,
    shard: u32,
    seq: u64,
    ingest_ns: u64,
    commit_ns: u64,
}

/// Encodes records; for CSV, a header line whenever the schema changes.
struct Printer {
    format: Format,
    buf: Vec<u8>,
    last_schema: Option<Arc<OutSchema>>,
}

impl Printer {
    fn new(format: Format) -> Printer {
        Printer {
            format,
            buf: Vec::with_capacity(1 << 16),
            last_schema: None,
        }
    }

    fn record(
        &mut self,
        out: &mut dyn Write,
        schema: &Arc<OutSchema>,
        r: &RowView<'_>,
        m: &Meta,
    ) -> std::io::Result<()> {
        self.buf.clear();
        let meta = [
            ("_gen", m.generation),
            ("_shard", m.shard as u64),
            ("_seq", m.seq),
            ("_ingest_ns", m.ingest_ns),
            ("_commit_ns", m.commit_ns),
        ];
        match self.format {
            Format::Json => json::write_record_meta(&mut self.buf, schema, r, &meta),
            Format::Csv => {
                let same = self
                    .last_schema
                    .as_ref()
                    .is_some_and(|s| Arc::ptr_eq(s, schema) || **s == **schema);
                if !same {
                    let names: Vec<&str> = schema
                        .fields
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .chain(meta.iter().map(|m| m.0))
                        .collect();
                    for (i, n) in names.iter().enumerate() {
                        if i > 0 {
                            self.buf.push(b',');
                        }
                        csv_text(&mut self.buf, n.as_bytes());
                    }
                    self.buf.push(b'\n');
                    self.last_schema = Some(schema.clone());
                }
                csv_record(&mut self.buf, schema, r, &meta);
            }
        }
        out.write_all(&self.buf)
    }
}

fn csv_record(out: &mut Vec<u8>, schema: &OutSchema, r: &RowView<'_>, meta: &[(&str, u64)]) {
    let mut ib = itoa::Buffer::new();
    for (k, (_, ty)) in schema.fields.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        match r.get(k, *ty) {
            RowValue::Null => {}
            RowValue::I64(x) | RowValue::Ts(x) => out.extend_from_slice(ib.format(x).as_bytes()),
            RowValue::U64(x) => out.extend_from_slice(ib.format(x).as_bytes()),
            RowValue::F64(x) => {
                if x.is_finite() {
                    json::write_f64(out, x);
                } else {
                    // The JSON spelling without its quotes.
                    let mut t = Vec::new();
                    json::write_f64(&mut t, x);
                    out.extend_from_slice(&t[1..t.len() - 1]);
                }
            }
            RowValue::Bool(x) => out.extend_from_slice(if x { b"true" } else { b"false" }),
            RowValue::Text(s) => {
                debug_assert!(matches!(ty, FieldType::Symbol | FieldType::Str));
                csv_text(out, s);
            }
        }
    }
    for (_, v) in meta {
        out.push(b',');
        out.extend_from_slice(ib.format(*v).as_bytes());
    }
    out.push(b'\n');
}

/// RFC 4180: quoted when it holds a comma, quote, CR or LF.
fn csv_text(out: &mut Vec<u8>, s: &[u8]) {
    if s.iter().any(|&c| matches!(c, b',' | b'"' | b'\n' | b'\r')) {
        out.push(b'"');
        for &c in s {
            if c == b'"' {
                out.push(b'"');
            }
            out.push(c);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_rfc3339_with_offsets_and_durations() {
        let z = parse_since("2026-11-30T12:00:00Z", 0).unwrap();
        assert_eq!(parse_since("2026-11-30T13:00:00+01:00", 0).unwrap(), z);
        assert_eq!(parse_since("2026-11-30T10:30:00-01:30", 0).unwrap(), z);
        assert_eq!(
            parse_since("10m", 700_000_000_000).unwrap(),
            100_000_000_000
        );
        assert!(parse_since("yesterday", 0).is_err());
        assert_eq!(parse_from("1:42").unwrap(), (1, 42));
        assert!(parse_from("1").is_err());
    }
}
