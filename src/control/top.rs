//! `mutstream top`: a live terminal view of a running appliance, from its
//! admin API (`GET /v1/status` once per interval): records/s per source,
//! records/s into and out of each stage of the running generation, sinks,
//! the generation each shard runs, and how long mutations took to reach
//! every shard. `q`, Esc or Ctrl-C quits.

use super::client::{CallError, Client, token_from};
use crate::metrics::thousands;
use clap::Parser;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "mutstream top",
    about = "Live view of a running mutstream: rates, stages, generations"
)]
pub struct TopArgs {
    /// How often to refresh.
    #[arg(short = 'i', long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// The admin API: HOST:PORT or http://HOST:PORT.
    #[arg(long, env = "MUTSTREAM_ADMIN", default_value = "127.0.0.1:9100")]
    pub admin: String,
    /// A file holding the token (else MUTSTREAM_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// One status answer and when it came.
struct Sample {
    at: Instant,
    v: Value,
}

/// `a`'s per-second rate of the number at `path` since `prev` (none on
/// the first sample, or when the count went back: a restart).
fn rate(now: &Sample, prev: Option<&Sample>, get: impl Fn(&Value) -> Option<u64>) -> String {
    let Some(p) = prev else {
        return "-".into();
    };
    match (get(&now.v), get(&p.v)) {
        (Some(a), Some(b)) if a >= b => {
            let dt = now.at.duration_since(p.at).as_secs_f64().max(1e-3);
            thousands(((a - b) as f64 / dt) as u64)
        }
        _ => "-".into(),
    }
}

fn us(ns: Option<u64>) -> String {
    ns.map_or("-".into(), |n| format!("{:.1} µs", n as f64 / 1000.0))
}

/// Runs `top`: 0 on `q`, 69 when the admin API cannot be reached at start.
pub fn main(args: TopArgs) -> ExitCode {
    let token = match token_from(args.token_file.as_ref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("mutstream top: {e}");
            return ExitCode::from(1);
        }
    };
    let client = Client::new(&args.admin, token, Duration::from_secs(2));
    // Reach the API before taking over the terminal: a wrong address is one
    // line and exit 69, not a blank screen.
    let first = match fetch(&client) {
        Ok(v) => v,
        Err((code, msg)) => {
            eprintln!("mutstream top: {msg}");
            return ExitCode::from(code);
        }
    };
    let mut terminal = ratatui::init();
    let r = run(&mut terminal, &client, &args, first);
    ratatui::restore();
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mutstream top: {e}");
            ExitCode::from(1)
        }
    }
}

/// The status, or (exit code, message).
fn fetch(client: &Client) -> Result<Value, (u8, String)> {
    match client.call("GET", "/v1/status", None, &[]) {
        Ok((200, v)) => Ok(v),
        Ok((_, v)) => Err((
            1,
            v["error"]
                .as_str()
                .map_or_else(|| v.to_string(), str::to_string),
        )),
        Err(e @ CallError::Unreachable(..)) => Err((69, e.to_string())),
        Err(e) => Err((1, e.to_string())),
    }
}

fn run(
    terminal: &mut ratatui::DefaultTerminal,
    client: &Client,
    args: &TopArgs,
    first: Value,
) -> std::io::Result<()> {
    let mut prev: Option<Sample> = None;
    let mut now = Sample {
        at: Instant::now(),
        v: first,
    };
    let mut error: Option<String> = None;
    loop {
        terminal.draw(|f| draw(f, &args.admin, &now, prev.as_ref(), error.as_deref()))?;
        let next = Instant::now() + args.interval;
        while Instant::now() < next {
            let left = next.saturating_duration_since(Instant::now());
            if event::poll(left)?
                && let Event::Key(k) = event::read()?
                && k.kind == KeyEventKind::Press
            {
                let ctrl_c =
                    k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                    return Ok(());
                }
            }
        }
        match fetch(client) {
            Ok(v) => {
                error = None;
                prev = Some(std::mem::replace(
                    &mut now,
                    Sample {
                        at: Instant::now(),
                        v,
                    },
                ));
            }
            // Keep the last picture and say why it is old.
            Err((_, msg)) => error = Some(msg),
        }
    }
}

fn draw(
    f: &mut ratatui::Frame<'_>,
    admin: &str,
    now: &Sample,
    prev: Option<&Sample>,
    error: Option<&str>,
) {
    let v = &now.v;
    let sources = v["sources"].as_array().cloned().unwrap_or_default();
    let stages = v["stages"].as_array().cloned().unwrap_or_default();
    let sinks = v["sinks"].as_array().cloned().unwrap_or_default();
    let shards = v["shards"].as_array().cloned().unwrap_or_default();
    let [head, src_area, stage_area, sink_area, shard_area, _, foot] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(sources.len() as u16 + 3),
        Constraint::Length(stages.len() as u16 + 3),
        Constraint::Length(sinks.len() as u16 + 3),
        Constraint::Length(shards.len() as u16 + 3),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let m = &v["mutations"];
    let header = vec![
        Line::from(format!(
            "mutstream top · {admin} · generation {} · pipeline {} · up {:.0} s",
            v["generation"],
            v["pipeline"].as_str().unwrap_or("?"),
            v["uptime_s"].as_f64().unwrap_or(0.0)
        ))
        .bold(),
        Line::from(format!(
            "mutations: {} applied, {} refused · every shard running a change after p50 {} · p99 {}",
            m["applied"],
            m["rejected"],
            us(m["ack_p50_ns"].as_u64()),
            us(m["ack_p99_ns"].as_u64())
        )),
        {
            let l = &v["latency"];
            let p = |k: &str, q: &str| {
                l[k][q]
                    .as_f64()
                    .map_or("-".to_string(), |x| format!("{x:.1}"))
            };
            Line::from(format!(
                "latency, generation {} (µs): read→sinks p50 {} p99 {} p99.9 {} max {} · kernel→read p50 {} p99 {}",
                l["generation"],
                p("pipeline", "p50_us"),
                p("pipeline", "p99_us"),
                p("pipeline", "p999_us"),
                p("pipeline", "max_us"),
                p("kernel", "p50_us"),
                p("kernel", "p99_us"),
            ))
        },
        match error {
            Some(e) => Line::from(format!("admin API: {e} (showing the last answer)")).red(),
            None => Line::from(format!(
                "pipeline: {} records in, {} filtered out, {} into windows",
                thousands(v["pipeline_in"].as_u64().unwrap_or(0)),
                thousands(v["filtered"].as_u64().unwrap_or(0)),
                thousands(v["windowed"].as_u64().unwrap_or(0))
            )),
        },
    ];
    f.render_widget(Paragraph::new(header), head);

    let rows = sources.iter().enumerate().map(|(i, s)| {
        let bad: u64 = s["bad"]
            .as_object()
            .map_or(0, |o| o.values().filter_map(Value::as_u64).sum());
        Row::new(vec![
            s["name"].as_str().unwrap_or("?").to_string(),
            rate(now, prev, |v| v["sources"][i]["records"].as_u64()),
            thousands(s["records"].as_u64().unwrap_or(0)),
            rate(now, prev, |v| v["sources"][i]["bytes"].as_u64()),
            thousands(bad),
            thousands(s["kernel_drops"].as_u64().unwrap_or(0)),
        ])
    });
    f.render_widget(
        table(
            rows,
            &[
                ("source", 16),
                ("records/s", 12),
                ("records", 15),
                ("bytes/s", 14),
                ("bad", 10),
                ("kernel drops", 13),
            ],
            "sources".to_string(),
        ),
        src_area,
    );

    let rows = stages.iter().enumerate().map(|(i, s)| {
        Row::new(vec![
            s["name"].as_str().unwrap_or("?").to_string(),
            s["op"].as_str().unwrap_or("?").to_string(),
            rate(now, prev, |v| stage(v, i, &s["name"], "in")),
            rate(now, prev, |v| stage(v, i, &s["name"], "out")),
            thousands(s["in"].as_u64().unwrap_or(0)),
            thousands(s["out"].as_u64().unwrap_or(0)),
        ])
    });
    f.render_widget(
        table(
            rows,
            &[
                ("stage", 16),
                ("op", 8),
                ("in/s", 12),
                ("out/s", 12),
                ("in", 15),
                ("out", 15),
            ],
            format!(
                "stages of generation {} ({} shard(s) counted)",
                v["generation"], v["stages_shards"]
            ),
        ),
        stage_area,
    );

    let rows = sinks.iter().enumerate().map(|(i, s)| {
        Row::new(vec![
            s["name"].as_str().unwrap_or("?").to_string(),
            rate(now, prev, |v| v["sinks"][i]["records"].as_u64()),
            thousands(s["records"].as_u64().unwrap_or(0)),
            thousands(s["dropped"].as_u64().unwrap_or(0)),
        ])
    });
    f.render_widget(
        table(
            rows,
            &[
                ("sink", 16),
                ("records/s", 12),
                ("records", 15),
                ("dropped", 10),
            ],
            "sinks".to_string(),
        ),
        sink_area,
    );

    let rows = shards.iter().map(|s| {
        Row::new(vec![
            s["shard"].to_string(),
            s["generation"].to_string(),
            s.get("armed").map_or(String::new(), Value::to_string),
            s["switches"].to_string(),
            s["states_carried"].to_string(),
            s["connections"].to_string(),
        ])
    });
    f.render_widget(
        table(
            rows,
            &[
                ("shard", 6),
                ("generation", 11),
                ("armed", 7),
                ("switches", 9),
                ("states carried", 15),
                ("connections", 12),
            ],
            "shards".to_string(),
        ),
        shard_area,
    );
    f.render_widget(Paragraph::new("q quits").dim(), foot);
}

/// A bordered table: `cols` are (header, width).
fn table<'a>(
    rows: impl IntoIterator<Item = Row<'a>>,
    cols: &[(&'a str, u16)],
    title: String,
) -> Table<'a> {
    Table::new(rows, cols.iter().map(|c| Constraint::Length(c.1)))
        .header(Row::new(cols.iter().map(|c| c.0)).style(Style::new().bold()))
        .block(Block::bordered().title(title))
}

/// Stage `i`'s count `key`, if the stage at `i` is still `name` (a
/// mutation may have reordered the stages between two samples).
fn stage(v: &Value, i: usize, name: &Value, key: &str) -> Option<u64> {
    let s = &v["stages"][i];
    (s["name"] == *name).then(|| s[key].as_u64()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;

    /// Two `status` answers one second apart, from a `demo` run.
    fn samples() -> (Sample, Sample) {
        let t0 = Instant::now();
        let a: Value = serde_json::from_str(include_str!("top-status-1.json")).unwrap();
        let b: Value = serde_json::from_str(include_str!("top-status-2.json")).unwrap();
        (
            Sample { at: t0, v: a },
            Sample {
                at: t0 + Duration::from_secs(1),
                v: b,
            },
        )
    }

    fn screen(width: u16, height: u16, error: Option<&str>) -> String {
        let (a, b) = samples();
        let mut t = ratatui::Terminal::new(TestBackend::new(width, height)).unwrap();
        t.draw(|f| draw(f, "127.0.0.1:9100", &b, Some(&a), error))
            .unwrap();
        let buf = t.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..buf.area.height {
            let line: String = (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect();
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    #[test]
    fn draws_rates_stages_sinks_and_shards() {
        let s = screen(120, 34, None);
        let (_, b) = samples();
        let g = &b.v["generation"];
        for want in [
            format!("generation {g} · pipeline <embedded>"),
            format!("{} applied, 0 refused", b.v["mutations"]["applied"]),
            format!(
                "latency, generation {g} (µs): read→sinks p50 {:.1}",
                b.v["latency"]["pipeline"]["p50_us"].as_f64().unwrap()
            ),
            "ticks-udp".into(),
            "hot              filter".into(),
            format!("stages of generation {g}"),
            "journal".into(),
            "q quits".into(),
        ] {
            assert!(s.contains(&want), "no {want:?} in:\n{s}");
        }
        // A rate from the two samples: hot's records in over one second.
        let (a, b) = samples();
        let d = b.v["stages"][0]["in"].as_u64().unwrap() - a.v["stages"][0]["in"].as_u64().unwrap();
        assert!(s.contains(&thousands(d)), "no rate {d} in:\n{s}");
        if std::env::var_os("MUTSTREAM_PRINT_TOP").is_some() {
            print!("{s}");
        }
    }

    #[test]
    fn an_unreachable_api_keeps_the_last_picture_and_says_so() {
        let s = screen(120, 34, Some("cannot reach the admin API"));
        assert!(s.contains("admin API: cannot reach the admin API (showing the last answer)"));
        assert!(s.contains("ticks-udp"));
    }

    #[test]
    fn a_small_terminal_does_not_panic() {
        for (w, h) in [(20, 5), (1, 1), (80, 10)] {
            screen(w, h, None);
        }
    }
}
