//! `mutlat`: latency from a journal. For every record, its frame's
//! `commit_ns` minus its `ts` (the intended send time `mutgen` wrote into
//! it) goes into an HdrHistogram (ns, 3 significant digits); following a
//! live journal, the time this process's tailer saw it goes into a second
//! one. Prints p50 … max, writes `.hgrm` files HdrHistogram's plotter
//! reads, draws a percentile plot (SVG, log "nines" axis), splits by
//! generation, and overlays `.hgrm` files read back.
//!
//! ```text
//! mutlat ./mutstream-data/ticks --hgrm l1.hgrm --plot l1.svg
//! mutlat ./mutstream-data/ticks --follow --idle 2s
//! mutlat --read before.hgrm --read after.hgrm --plot compare.svg
//! ```

use anyhow::{Context, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use mutstream::codec::FieldType;
use mutstream::journal::segment::list_partitions;
use mutstream::journal::tailer::{StartAt, Tailer};
use mutstream::metrics::hgrm;
use mutstream::sink::row::{RowIter, RowValue};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// A journal sink's directory.
    #[arg(required_unless_present = "read")]
    dir: Option<PathBuf>,
    /// Keep reading as records are committed; the tailer's own latency is
    /// reported too. Ends on SIGINT, --for, or --idle.
    #[arg(long)]
    follow: bool,
    /// Following: stop after this long (`30s`).
    #[arg(long = "for", value_name = "D")]
    for_: Option<String>,
    /// Following: stop when nothing new arrived for this long.
    #[arg(long, default_value = "5s")]
    idle: String,
    /// The timestamp field holding the intended send time.
    #[arg(long, default_value = "ts")]
    field: String,
    /// Also report each generation (`_gen`) on its own.
    #[arg(long)]
    by_gen: bool,
    /// Write the commit latency as an `.hgrm` (values in µs); following,
    /// the tailer's goes beside it as `<stem>.tailer.hgrm`.
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Draw a percentile plot (SVG).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// `mutgen --sent-log` of the run: also report latency from when each
    /// record actually left, to show what measuring from the intended send
    /// time adds (the delay a stalled sender would otherwise hide).
    #[arg(long)]
    sent_log: Option<PathBuf>,
    /// Read `.hgrm` files instead of a journal (repeat to overlay them).
    #[arg(long)]
    read: Vec<PathBuf>,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mutlat: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// 1 ns to 1 hour at 3 significant digits; longer latencies saturate.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds")
}

/// A named percentile table.
struct Series {
    name: String,
    rows: Vec<hgrm::Row>,
    count: u64,
}

fn series(name: &str, h: &Histogram<u64>) -> Series {
    let rows = hgrm::read(&hgrm::write(h, 1000.0)).expect("our own table reads back");
    Series {
        name: name.into(),
        rows,
        count: h.len(),
    }
}

fn print_table(title: &str, all: &[Series]) {
    println!("{title}");
    print!("{:<22} {:>10}", "", "records");
    for (n, _) in hgrm::REPORT {
        print!(" {n:>10}");
    }
    println!();
    for s in all {
        print!("{:<22} {:>10}", s.name, s.count);
        for (_, q) in hgrm::REPORT {
            print!(" {:>10.3}", hgrm::value_at(&s.rows, q));
        }
        println!();
    }
}

fn run(a: Args) -> anyhow::Result<()> {
    if !a.read.is_empty() {
        let mut all = Vec::new();
        for p in &a.read {
            let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            let rows = hgrm::read(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            let count = rows.last().map_or(0, |r| r.total);
            let name = p
                .file_stem()
                .map_or("hgrm".into(), |s| s.to_string_lossy().into_owned());
            all.push(Series { name, rows, count });
        }
        print_table("latency percentiles (µs), from .hgrm:", &all);
        if let Some(p) = &a.plot {
            plot(p, &all)?;
        }
        return Ok(());
    }
    let dir = a.dir.clone().expect("clap requires DIR without --read");
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let idle =
        humantime::parse_duration(&a.idle).with_context(|| format!("--idle {:?}", a.idle))?;
    let for_ = a
        .for_
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
        .context("--for")?;
    let parts =
        list_partitions(&dir).with_context(|| format!("{}: not a journal", dir.display()))?;
    if parts.is_empty() {
        bail!("{}: no partitions (shard-N directories)", dir.display());
    }
    let mut tailers: Vec<Tailer> = parts
        .iter()
        .map(|(_, p)| Tailer::open(p, StartAt::Oldest))
        .collect::<Result<_, _>>()?;
    let sent = a
        .sent_log
        .as_ref()
        .map(|p| {
            let b = std::fs::read(p).with_context(|| format!("{}", p.display()))?;
            mutstream::loadgen::schedule::SentLog::decode(&b)
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        })
        .transpose()?;
    let mut commit = histogram();
    let mut seen = histogram();
    let mut actual = histogram();
    // From the first byte of the record's batch leaving the socket to the
    // commit: the appliance alone, without sender and kernel delays.
    let mut inside = histogram();
    let mut by_gen: BTreeMap<u64, Histogram<u64>> = BTreeMap::new();
    let (mut negative, mut no_ts) = (0u64, 0u64);
    let t0 = Instant::now();
    let mut last_new = Instant::now();
    loop {
        let mut got = 0u64;
        for t in &mut tailers {
            while let Some(f) = t.next_frame() {
                let now = mutstream::sys::now_ns();
                let Some(k) = f.schema.fields.iter().position(|(n, ty)| {
                    n == &a.field && matches!(ty, FieldType::Timestamp | FieldType::I64)
                }) else {
                    no_ts += f.header.count as u64;
                    continue;
                };
                let ty = f.schema.fields[k].1;
                let _ = inside.record_n(
                    (f.header.commit_ns.saturating_sub(f.header.ingest_ns)).min(3_600_000_000_000),
                    f.header.count as u64,
                );
                let g = by_gen.entry(f.header.generation).or_insert_with(histogram);
                for r in RowIter::new(f.rows, f.schema) {
                    let ts = match r.get(k, ty) {
                        RowValue::Ts(x) | RowValue::I64(x) => x,
                        _ => {
                            no_ts += 1;
                            continue;
                        }
                    };
                    if let Some(s) = &sent
                        && let Some(g) = s.schedule.index_of(ts as u64)
                        && let Some(&t) = s.sent_ns.get(g as usize)
                    {
                        actual.saturating_record(f.header.commit_ns.saturating_sub(t));
                    }
                    let lat = f.header.commit_ns as i64 - ts;
                    if lat < 0 {
                        negative += 1;
                    }
                    let lat = lat.max(0) as u64;
                    commit.saturating_record(lat);
                    if a.by_gen {
                        g.saturating_record(lat);
                    }
                    if a.follow {
                        seen.saturating_record((now as i64 - ts).max(0) as u64);
                    }
                    got += 1;
                }
            }
            for e in t.take_events() {
                eprintln!("mutlat: {e}");
            }
        }
        if !a.follow || stop.load(Ordering::Relaxed) {
            break;
        }
        if got > 0 {
            last_new = Instant::now();
        } else {
            if last_new.elapsed() >= idle || for_.is_some_and(|d| t0.elapsed() >= d) {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        if for_.is_some_and(|d| t0.elapsed() >= d) {
            break;
        }
    }
    if commit.is_empty() {
        bail!(
            "{}: no record with a {:?} timestamp field",
            dir.display(),
            a.field
        );
    }
    let mut all = vec![series("commit_ns - ts", &commit)];
    if sent.is_some() {
        all.push(series("commit_ns - sent", &actual));
    }
    all.push(series("commit_ns - ingest_ns", &inside));
    if a.follow {
        all.push(series("tailer saw - ts", &seen));
    }
    if a.by_gen {
        for (g, h) in &by_gen {
            if !h.is_empty() {
                all.push(series(&format!("  generation {g}"), h));
            }
        }
    }
    print_table(
        &format!(
            "latency percentiles (µs) of {} records from {}:",
            commit.len(),
            dir.display()
        ),
        &all,
    );
    if negative > 0 {
        println!(
            "note: {negative} records were committed before their ts (clock or schedule ahead of the appliance); counted as 0"
        );
    }
    if no_ts > 0 {
        println!(
            "note: {no_ts} records without a {:?} timestamp were skipped",
            a.field
        );
    }
    if let Some(p) = &a.hgrm {
        std::fs::write(p, hgrm::write(&commit, 1000.0))
            .with_context(|| format!("{}", p.display()))?;
        if a.follow {
            let tp = p.with_extension("tailer.hgrm");
            std::fs::write(&tp, hgrm::write(&seen, 1000.0))?;
            println!("wrote {} and {}", p.display(), tp.display());
        } else {
            println!("wrote {}", p.display());
        }
    }
    if let Some(p) = &a.plot {
        plot(p, &all)?;
    }
    Ok(())
}

/// Percentile plot: x is the number of nines (log 1/(1-q)), y latency µs.
fn plot(path: &Path, all: &[Series]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| anyhow::anyhow!("the embedded font does not load"))?;
    let nines = |q: f64| -> f64 { (1.0 / (1.0 - q.min(0.999_999))).log10() };
    let xmax = all
        .iter()
        .flat_map(|s| s.rows.iter().map(|r| nines(r.quantile)))
        .fold(1.0f64, f64::max)
        .ceil();
    let ymax = all
        .iter()
        .flat_map(|s| s.rows.iter().map(|r| r.value))
        .fold(0.0f64, f64::max)
        * 1.05;
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Latency by percentile", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax.max(0.001))?;
    chart
        .configure_mesh()
        .x_labels(xmax as usize + 1)
        .x_label_formatter(&|x| {
            let n = x.round() as i32;
            if n == 0 {
                "0%".into()
            } else {
                let p = 100.0 - 100.0 / 10f64.powi(n);
                format!("{p}%")
            }
        })
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .label_style(("sans-serif", 14))
        .draw()?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (i, s) in all.iter().enumerate() {
        let c = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(
                s.rows.iter().map(|r| (nines(r.quantile), r.value)),
                c.stroke_width(2),
            ))?
            .label(s.name.trim().to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    println!("wrote {}", path.display());
    Ok(())
}
