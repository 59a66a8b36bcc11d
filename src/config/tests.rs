//! Config parsing and validation: defaults, errors with lines, examples.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "t.toml", Path::new("."))
}

const MINIMAL: &str = r#"
[schemas.s]
fields = [{ name = "ts", type = "timestamp" }, { name = "v", type = "f64" }]

[[source]]
name = "in"
transport = "tcp"
listen = "127.0.0.1:7000"
framing = "newline"
format = "json"
schema = "s"

[pipeline]
text = "to out"

[[sink]]
name = "out"
kind = "stdout"
"#;

#[test]
fn defaults_follow_the_spec_table() {
    let c = parse(MINIMAL).unwrap();
    let r = &c.runtime;
    assert_eq!(r.shards, default_shards());
    assert!(r.pin);
    assert_eq!(r.batch_max, 1024);
    assert_eq!(r.ring_capacity, 65536);
    assert_eq!(r.idle, Idle::Adaptive);
    assert_eq!(r.state_dir, PathBuf::from("./mutstream-data/state"));
    assert_eq!(r.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(r.max_symbols, 1_000_000);
    assert_eq!(r.max_state_keys, 1_000_000);
    assert_eq!(r.max_live_generations, 16);
    assert_eq!(c.admin.listen, "127.0.0.1:9100".parse().unwrap());
    let s = &c.sources[0];
    assert_eq!(s.max_frame, 64 << 10);
    assert_eq!(s.max_connections, 1024);
    assert_eq!(s.idle_timeout, Some(Duration::from_secs(300)));
    assert_eq!(s.rcvbuf_bytes, 8 << 20);
    assert_eq!(s.decoder.precision, Precision::Ns);
    let k = &c.sinks[0];
    assert_eq!(k.on_full, OnFull::Block);
    assert_eq!(k.segment_size, 256 << 20);
    assert_eq!(k.fsync, Fsync::Interval);
    assert_eq!(k.fsync_interval, Duration::from_millis(100));
    assert!(!c.schemas[0].big_endian);
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn unknown_key_names_key_and_line() {
    let text = MINIMAL.replace("[[source]]\n", "[[source]]\nbogus = 1\n");
    let e = err(&text);
    assert!(e.starts_with("t.toml:6:"), "{e}");
    assert!(e.contains("unknown field `bogus`"), "{e}");
    let e = err("[runtime]\npinn = true\n");
    assert!(e.starts_with("t.toml:2:1:"), "{e}");
    assert!(e.contains("`pinn`"), "{e}");
}

#[test]
fn invalid_values_are_named() {
    let e = err(&MINIMAL.replace("format = \"json\"", "format = \"xml\""));
    assert!(e.contains("unknown variant `xml`"), "{e}");
    let e = err(&MINIMAL.replace("schema = \"s\"", "schema = \"nope\""));
    assert!(
        e.contains("t.toml:5: source \"in\": schema \"nope\" is not defined"),
        "{e}"
    );
    let e = err(&MINIMAL.replace("framing = \"newline\"", "framing = \"datagram\""));
    assert!(e.contains("needs transport = \"udp\""), "{e}");
    let e = err(&MINIMAL.replace("framing = \"newline\"", "framing = \"fixed\""));
    assert!(e.contains("cannot use framing = \"fixed\""), "{e}");
    let e = err(&format!("{MINIMAL}\n[runtime]\nbatch_max = 0\n"));
    assert!(e.contains("batch_max = 0"), "{e}");
    let e = err(&format!(
        "{MINIMAL}\n[runtime]\nshutdown_timeout = \"30\"\n"
    ));
    assert!(e.contains("no unit"), "{e}");
    let e = err(&MINIMAL.replace("text = \"to out\"", "text = \"to out\"\nfile = \"x.mts\""));
    assert!(e.contains("exactly one of text or file"), "{e}");
    let e = err(&MINIMAL.replace("type = \"f64\"", "type = \"float\""));
    assert!(e.contains("unknown type \"float\""), "{e}");
}

#[test]
fn binary_layout_is_checked() {
    let text = r#"
[schemas.t]
size = 8
fields = [{ name = "a", type = "u32", offset = 0 }, { name = "b", type = "f64", offset = 4 }]
"#;
    let e = err(text);
    assert!(e.contains("ends past the record size 8"), "{e}");
    let text = r#"
[schemas.t]
size = 8
fields = [{ name = "a", type = "symbol", offset = 0 }]
[[source]]
name = "u"
transport = "udp"
listen = "127.0.0.1:1"
framing = "datagram"
format = "binary"
schema = "t"
[pipeline]
text = "to o"
[[sink]]
name = "o"
kind = "blackhole"
"#;
    let e = err(text);
    assert!(e.contains("has no fixed binary layout"), "{e}");
}

#[test]
fn non_loopback_admin_needs_tokens() {
    let e = err(&format!("{MINIMAL}\n[admin]\nlisten = \"0.0.0.0:9100\"\n"));
    assert!(e.contains("is not loopback"), "{e}");
    let ok = parse(&format!(
        "{MINIMAL}\n[admin]\nlisten = \"0.0.0.0:9100\"\ntokens = {{ ops = \"0123456789abcdef0\" }}\n"
    ))
    .unwrap();
    assert_eq!(ok.admin.tokens[0].0, "ops");
}

#[test]
fn inline_pipeline_knows_its_line() {
    let text = MINIMAL.replace(
        "text = \"to out\"",
        "text = \"\"\"\nfilter v > 1\n| to out\n\"\"\"",
    );
    let c = parse(&text).unwrap();
    // `text = """` is on line 14, so the text's line 1 is line 15.
    assert_eq!(c.pipeline.first_line, 14);
    assert!(c.pipeline.text.starts_with("filter"));
}

#[test]
fn embedded_default_is_valid() {
    let c = Config::embedded();
    assert_eq!(c.sources.len(), 2);
    assert_eq!(c.sinks.len(), 2);
    assert_eq!(c.params.len(), 2);
}

fn examples_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/examples");
    assert!(
        d.is_dir(),
        "../shared/examples must sit beside the repository"
    );
    d
}

#[test]
fn examples_parse_verbatim() {
    for name in ["ticks.toml", "iot.toml"] {
        let c = Config::load(&examples_dir().join(name)).unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.sources.is_empty());
        // Journal sinks run: only the control API is noted as missing.
        assert!(
            !c.notices.iter().any(|n| n.contains("journal")),
            "{:?}",
            c.notices
        );
    }
    let t = Config::load(&examples_dir().join("ticks.toml")).unwrap();
    assert_eq!(t.runtime.shards, 1);
    assert_eq!(t.tables.len(), 2);
    let w = t.tables.iter().find(|t| t.name == "watchlist").unwrap();
    assert_eq!(w.key_type, FieldType::U64);
    assert_eq!(w.keys.len(), 10);
    assert!(t.pipeline.text.contains("route alerts"));
}
