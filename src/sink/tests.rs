//! Row format round trips and the JSON encoding of SPEC §3.

use super::json::write_record;
use super::row::{RowIter, RowValue, Scratch, encode};
use crate::codec::schema::{Field, Schema, parse_type};
use crate::codec::{Batch, Interner};
use crate::config::ParamValue;
use crate::pipeline::compile::{CompileInput, compile};
use crate::pipeline::exec::{Emit, Exec, Rows};
use crate::pipeline::parser::parse;
use crate::pipeline::program::EmitSpec;
use std::sync::Arc;

struct Capture(
    Vec<(Arc<crate::pipeline::program::OutSchema>, Vec<u8>)>,
    Scratch,
);

impl Emit for Capture {
    fn emit(&mut self, spec: &EmitSpec, rows: &Rows<'_>) {
        let mut out = Vec::new();
        let n = encode(spec, rows, &mut out, &mut self.1);
        assert_eq!(n as usize, rows.sel.len());
        self.0.push((spec.schema.clone(), out));
    }
}

fn schema(fields: &[(&str, &str)]) -> Arc<Schema> {
    Arc::new(Schema::new(
        "t",
        fields
            .iter()
            .map(|(n, t)| {
                let (ty, wire) = parse_type(t).unwrap();
                Field {
                    name: n.to_string(),
                    ty,
                    wire,
                    offset: None,
                    required: false,
                }
            })
            .collect(),
        None,
        false,
    ))
}

fn run(
    s: &Arc<Schema>,
    src: &str,
    params: &[(String, ParamValue)],
    fill: impl Fn(&mut Batch, &mut Interner),
) -> (Capture, Interner) {
    let sinks = vec!["out".to_string(), "alerts".to_string()];
    let c = compile(
        &parse(src).unwrap(),
        &CompileInput {
            schema: s,
            params,
            tables: &[],
            sinks: &sinks,
        },
    )
    .unwrap();
    let mut b = Batch::new(s, 16);
    let mut syms = Interner::new(100);
    fill(&mut b, &mut syms);
    let mut exec = Exec::new(&c.chain, 16);
    let mut cap = Capture(Vec::new(), Scratch::default());
    exec.run(&c.chain, &b, &mut syms, 0, &mut cap);
    (cap, syms)
}

#[test]
fn rows_round_trip_every_type_with_nulls() {
    let s = schema(&[
        ("ts", "timestamp"),
        ("i", "i64"),
        ("u", "u64"),
        ("f", "f64"),
        ("b", "bool"),
        ("sym", "symbol"),
        ("s", "string"),
    ]);
    let (cap, _) = run(&s, "filter i != 2 or i == null | to out", &[], |b, syms| {
        for k in 0..4i64 {
            let mut r = b.row();
            r.set_i64(0, 1000 + k);
            if k != 1 {
                r.set_i64(1, k);
                r.set_u64(2, u64::MAX - k as u64);
                r.set_str(6, format!("str-{k}").repeat(k as usize).as_bytes());
            }
            r.set_f64(3, if k == 3 { f64::NAN } else { k as f64 / 4.0 });
            r.set_bool(4, k % 2 == 0);
            let id = syms.intern(format!("sym{k}").as_bytes()).unwrap();
            r.set_sym(5, id);
            r.commit(&s, 0).unwrap();
        }
    });
    assert_eq!(cap.0.len(), 1);
    let (schema, bytes) = &cap.0[0];
    let rows: Vec<_> = RowIter::new(bytes, schema).collect();
    // Row with i == 2 filtered out; the null-i row (k = 1) kept (`i != 2` alone
    // would drop it: a comparison with null is false).
    assert_eq!(rows.len(), 3);
    let ks = [0i64, 1, 3];
    for (row, &k) in rows.iter().zip(&ks) {
        let get = |f: usize| row.get(f, schema.fields[f].1);
        assert_eq!(get(0), RowValue::Ts(1000 + k));
        if k == 1 {
            assert_eq!(get(1), RowValue::Null);
            assert_eq!(get(2), RowValue::Null);
            assert_eq!(get(6), RowValue::Null);
        } else {
            assert_eq!(get(1), RowValue::I64(k));
            assert_eq!(get(2), RowValue::U64(u64::MAX - k as u64));
            assert_eq!(
                get(6),
                RowValue::Text(format!("str-{k}").repeat(k as usize).as_bytes())
            );
        }
        match get(3) {
            RowValue::F64(x) if k == 3 => assert!(x.is_nan()),
            v => assert_eq!(v, RowValue::F64(k as f64 / 4.0)),
        }
        assert_eq!(get(4), RowValue::Bool(k % 2 == 0));
        assert_eq!(get(5), RowValue::Text(format!("sym{k}").as_bytes()));
    }
}

#[test]
fn json_matches_the_spec_example() {
    let s = schema(&[
        ("ts", "timestamp"),
        ("seq", "u64"),
        ("symbol", "u64"),
        ("qty", "i64"),
        ("price", "f64"),
    ]);
    let (cap, _) = run(
        &s,
        "eval notional = price * qty, sector = \"tech\", lot = 100 | to out",
        &[],
        |b, _| {
            let mut r = b.row();
            r.set_i64(0, 1732492800000000000);
            r.set_u64(1, 7);
            r.set_u64(2, 5);
            r.set_i64(3, 120);
            r.set_f64(4, 101.25);
            r.commit(&s, 0).unwrap();
        },
    );
    let (schema, bytes) = &cap.0[0];
    let mut out = Vec::new();
    for r in RowIter::new(bytes, schema) {
        write_record(&mut out, schema, &r, 1);
    }
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"ts\":1732492800000000000,\"seq\":7,\"symbol\":5,\"qty\":120,\"price\":101.25,\"notional\":12150.0,\"sector\":\"tech\",\"lot\":100,\"_gen\":1}\n"
    );
}

#[test]
fn null_fields_are_omitted() {
    let s = schema(&[("a", "i64"), ("b", "string")]);
    let (cap, _) = run(&s, "to out", &[], |b, _| {
        let mut r = b.row();
        r.set_str(1, b"x\"y");
        r.commit(&s, 0).unwrap();
    });
    let (schema, bytes) = &cap.0[0];
    let mut out = Vec::new();
    for r in RowIter::new(bytes, schema) {
        write_record(&mut out, schema, &r, 9);
    }
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"b\":\"x\\\"y\",\"_gen\":9}\n"
    );
}
