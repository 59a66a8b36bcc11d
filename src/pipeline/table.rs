//! Lookup tables: sets (keys) and maps (key → columns), shared by every
//! shard of a generation.
//!
//! A table is keyed by value, never by a shard's symbol ids, so one table
//! serves all shards. Keys compare by value across numeric types: integer
//! keys (`i64`, `u64`, `timestamp`) as exact integers, `f64` keys by bits
//! (with -0.0 folded into 0.0; NaN never matches), text by bytes. Lookups
//! hash the key and probe; they never allocate.

use crate::codec::FieldType;
use crate::codec::num::{NumError, parse_i64, parse_u64};
use crate::codec::time::parse_rfc3339;
use crate::config::TableDef;
use hashbrown::HashTable;
use std::hash::{BuildHasher, Hash, Hasher};

/// A key as looked up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeyRef<'a> {
    Int(i128),
    /// `f64` bits, -0.0 folded into 0.0.
    Float(u64),
    Bool(bool),
    Text(&'a [u8]),
}

impl KeyRef<'_> {
    /// The key of an `f64` value (None for NaN, which never matches).
    #[inline]
    pub fn float(v: f64) -> Option<KeyRef<'static>> {
        if v.is_nan() {
            None
        } else if v == 0.0 {
            Some(KeyRef::Float(0))
        } else {
            Some(KeyRef::Float(v.to_bits()))
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum StoredKey {
    Int(i128),
    Float(u64),
    Bool(bool),
    Text(u32, u32),
}

/// One cell of a map's column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell {
    Null,
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    /// Offset and length in the table's arena.
    Text(u32, u32),
}

/// A loaded, immutable table.
pub struct Table {
    pub name: String,
    pub key_field: String,
    pub key_type: FieldType,
    /// Empty for a set.
    pub columns: Vec<(String, FieldType)>,
    index: HashTable<u32>,
    keys: Vec<StoredKey>,
    /// `cells[c][row]`.
    cells: Vec<Vec<Cell>>,
    arena: Vec<u8>,
    hasher: foldhash::fast::FixedState,
}

/// Tables compare by identity: two instructions refer to the same table
/// when they share it.
impl PartialEq for Table {
    fn eq(&self, other: &Table) -> bool {
        std::ptr::eq(self, other)
    }
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Table({}, {} rows)", self.name, self.keys.len())
    }
}

fn int_key(t: FieldType) -> bool {
    matches!(t, FieldType::I64 | FieldType::U64 | FieldType::Timestamp)
}

impl Table {
    /// Whether `other` holds exactly the same declaration and rows (in the
    /// same order), so that anything a shard derived from one (row numbers
    /// of keys, interned cells, the cells themselves) holds for the other.
    /// Floats compare by their bits: `-0.0` is not `0.0` here, and a NaN
    /// equals the same NaN.
    pub fn same_content(&self, other: &Table) -> bool {
        let same_cell = |a: &Cell, b: &Cell| match (a, b) {
            (Cell::F64(x), Cell::F64(y)) => x.to_bits() == y.to_bits(),
            _ => a == b,
        };
        let same_col = |a: &Vec<Cell>, b: &Vec<Cell>| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_cell(x, y))
        };
        self.name == other.name
            && self.key_field == other.key_field
            && self.key_type == other.key_type
            && self.columns == other.columns
            && self.keys == other.keys
            && self.cells.len() == other.cells.len()
            && self
                .cells
                .iter()
                .zip(&other.cells)
                .all(|(a, b)| same_col(a, b))
            && self.arena == other.arena
    }

    fn hash_key(&self, k: KeyRef<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        match k {
            KeyRef::Int(v) => v.hash(&mut h),
            KeyRef::Float(b) => b.hash(&mut h),
            KeyRef::Bool(b) => b.hash(&mut h),
            KeyRef::Text(t) => t.hash(&mut h),
        }
        h.finish()
    }

    fn stored(&self, row: u32) -> KeyRef<'_> {
        match self.keys[row as usize] {
            StoredKey::Int(v) => KeyRef::Int(v),
            StoredKey::Float(b) => KeyRef::Float(b),
            StoredKey::Bool(b) => KeyRef::Bool(b),
            StoredKey::Text(o, l) => KeyRef::Text(&self.arena[o as usize..(o + l) as usize]),
        }
    }

    /// The row holding key `k`.
    #[inline]
    pub fn find(&self, k: KeyRef<'_>) -> Option<u32> {
        let h = self.hash_key(k);
        self.index.find(h, |&r| self.stored(r) == k).copied()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Column `c` of row `row`.
    #[inline]
    pub fn cell(&self, c: usize, row: u32) -> Cell {
        self.cells[c][row as usize]
    }

    /// The bytes of a text cell.
    #[inline]
    pub fn text(&self, off: u32, len: u32) -> &[u8] {
        &self.arena[off as usize..(off + len) as usize]
    }

    /// An empty table of `def`'s shape.
    fn empty(def: &TableDef) -> Table {
        Table {
            name: def.name.clone(),
            key_field: def.key_field.clone(),
            key_type: def.key_type,
            columns: def.columns.clone(),
            index: HashTable::new(),
            keys: Vec::new(),
            cells: vec![Vec::new(); def.columns.len()],
            arena: Vec::new(),
            hasher: foldhash::fast::FixedState::with_seed(0x7461_626c),
        }
    }

    /// Loads `def`: inline `keys` or `rows`, or its CSV `file` (a header
    /// naming the key field and the columns).
    ///
    /// # Errors
    /// A value of the wrong type, a duplicate key, more rows than
    /// `max_rows`, an unreadable file — one line naming the table, the file
    /// and the row.
    pub fn load(def: &TableDef) -> Result<Table, String> {
        let mut t = Table::empty(def);
        let e = |msg: String| format!("table {}: {msg}", def.name);
        if let Some(path) = &def.file {
            let mut rd = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_path(path)
                .map_err(|err| e(format!("cannot read {}: {err}", path.display())))?;
            let header = rd
                .headers()
                .map_err(|err| e(format!("{}: {err}", path.display())))?
                .clone();
            let pos = |name: &str| header.iter().position(|h| h.trim() == name);
            let key_at = pos(&def.key_field).ok_or_else(|| {
                e(format!(
                    "{}: the header has no key column {:?}",
                    path.display(),
                    def.key_field
                ))
            })?;
            let mut col_at = Vec::new();
            for (c, _) in &def.columns {
                col_at.push(pos(c).ok_or_else(|| {
                    e(format!(
                        "{}: the header has no column {c:?}",
                        path.display()
                    ))
                })?);
            }
            for (i, rec) in rd.records().enumerate() {
                let line = i + 2;
                let rec = rec.map_err(|err| e(format!("{}:{line}: {err}", path.display())))?;
                let at = |what: &str, msg: String| {
                    e(format!("{}:{line}: {what}: {msg}", path.display()))
                };
                let key = rec.get(key_at).unwrap_or("");
                let key = t.parse_key(key.trim()).map_err(|m| at(&def.key_field, m))?;
                let mut cells = Vec::new();
                for (k, (c, ty)) in def.columns.iter().enumerate() {
                    let s = rec.get(col_at[k]).unwrap_or("");
                    cells.push(t.parse_cell(*ty, s).map_err(|m| at(c, m))?);
                }
                t.insert(key, cells, def.max_rows)
                    .map_err(|m| e(format!("{}:{line}: {m}", path.display())))?;
            }
        } else if def.columns.is_empty() {
            for (i, k) in def.keys.iter().enumerate() {
                let key = t.toml_key(k).map_err(|m| e(format!("keys[{i}]: {m}")))?;
                t.insert(key, Vec::new(), def.max_rows)
                    .map_err(|m| e(format!("keys[{i}]: {m}")))?;
            }
        } else {
            for (i, row) in def.rows.iter().enumerate() {
                let k = row
                    .get(&def.key_field)
                    .ok_or_else(|| e(format!("rows[{i}] has no key field {}", def.key_field)))?;
                let key = t
                    .toml_key(k)
                    .map_err(|m| e(format!("rows[{i}].{}: {m}", def.key_field)))?;
                let mut cells = Vec::new();
                for (c, ty) in &def.columns {
                    cells.push(match row.get(c) {
                        None => Cell::Null,
                        Some(v) => t
                            .toml_cell(*ty, v)
                            .map_err(|m| e(format!("rows[{i}].{c}: {m}")))?,
                    });
                }
                t.insert(key, cells, def.max_rows)
                    .map_err(|m| e(format!("rows[{i}]: {m}")))?;
            }
        }
        Ok(t)
    }

    fn insert(&mut self, key: StoredKey, cells: Vec<Cell>, max_rows: u64) -> Result<(), String> {
        if self.keys.len() as u64 >= max_rows {
            return Err(format!("more than max_rows = {max_rows} rows"));
        }
        let row = self.keys.len() as u32;
        self.keys.push(key);
        let k = self.stored(row);
        if self.find(k).is_some() {
            let shown = match k {
                KeyRef::Int(v) => v.to_string(),
                KeyRef::Float(b) => f64::from_bits(b).to_string(),
                KeyRef::Bool(b) => b.to_string(),
                KeyRef::Text(t) => format!("{:?}", String::from_utf8_lossy(t)),
            };
            self.keys.pop();
            return Err(format!("duplicate key {shown}"));
        }
        let h = self.hash_key(k);
        let (keys, arena, hasher) = (&self.keys, &self.arena, &self.hasher);
        self.index.insert_unique(h, row, |&r| {
            let mut st = hasher.build_hasher();
            match keys[r as usize] {
                StoredKey::Int(v) => v.hash(&mut st),
                StoredKey::Float(b) => b.hash(&mut st),
                StoredKey::Bool(b) => b.hash(&mut st),
                StoredKey::Text(o, l) => arena[o as usize..(o + l) as usize].hash(&mut st),
            }
            st.finish()
        });
        for (c, v) in cells.into_iter().enumerate() {
            self.cells[c].push(v);
        }
        Ok(())
    }

    fn push_text(&mut self, s: &[u8]) -> (u32, u32) {
        let off = self.arena.len() as u32;
        self.arena.extend_from_slice(s);
        (off, s.len() as u32)
    }

    fn parse_key(&mut self, s: &str) -> Result<StoredKey, String> {
        if s.is_empty() {
            return Err("an empty key".into());
        }
        match self.parse_cell(self.key_type, s)? {
            Cell::Null => Err("an empty key".into()),
            c => Ok(self.key_of(c)),
        }
    }

    fn key_of(&self, c: Cell) -> StoredKey {
        match c {
            Cell::I64(v) => StoredKey::Int(v as i128),
            Cell::U64(v) => StoredKey::Int(v as i128),
            Cell::F64(v) => match KeyRef::float(v) {
                Some(KeyRef::Float(b)) => StoredKey::Float(b),
                _ => StoredKey::Float(f64::NAN.to_bits()),
            },
            Cell::Bool(b) => StoredKey::Bool(b),
            Cell::Text(o, l) => StoredKey::Text(o, l),
            Cell::Null => unreachable!("keys are never null"),
        }
    }

    fn parse_cell(&mut self, ty: FieldType, s: &str) -> Result<Cell, String> {
        if s.is_empty() && !ty.is_text() {
            return Ok(Cell::Null);
        }
        let num = |e: NumError| match e {
            NumError::Range => format!("{s:?} is out of range for {ty}"),
            NumError::Syntax => format!("{s:?} is not {}", article(ty)),
        };
        Ok(match ty {
            FieldType::I64 => Cell::I64(parse_i64(s.as_bytes()).map_err(num)?),
            FieldType::U64 => Cell::U64(parse_u64(s.as_bytes()).map_err(num)?),
            FieldType::Timestamp => match parse_i64(s.as_bytes()) {
                Ok(v) => Cell::I64(v),
                Err(_) => Cell::I64(
                    parse_rfc3339(s.as_bytes())
                        .ok_or_else(|| format!("{s:?} is not a timestamp (ns or RFC 3339)"))?,
                ),
            },
            FieldType::F64 => Cell::F64(
                s.parse::<f64>()
                    .map_err(|_| format!("{s:?} is not a float"))?,
            ),
            FieldType::Bool => match s.to_ascii_lowercase().as_str() {
                "true" => Cell::Bool(true),
                "false" => Cell::Bool(false),
                _ => return Err(format!("{s:?} is not a bool (true or false)")),
            },
            FieldType::Symbol | FieldType::Str => {
                let (o, l) = self.push_text(s.as_bytes());
                Cell::Text(o, l)
            }
        })
    }

    fn toml_key(&mut self, v: &toml::Value) -> Result<StoredKey, String> {
        match self.toml_cell(self.key_type, v)? {
            Cell::Null => Err("a key cannot be null".into()),
            c => Ok(self.key_of(c)),
        }
    }

    fn toml_cell(&mut self, ty: FieldType, v: &toml::Value) -> Result<Cell, String> {
        let bad = || format!("{} is not {}", v, article(ty));
        Ok(match (ty, v) {
            (FieldType::I64 | FieldType::Timestamp, toml::Value::Integer(i)) => Cell::I64(*i),
            (FieldType::Timestamp, toml::Value::String(s)) => Cell::I64(
                parse_rfc3339(s.as_bytes())
                    .ok_or_else(|| format!("{s:?} is not an RFC 3339 timestamp"))?,
            ),
            (FieldType::U64, toml::Value::Integer(i)) => {
                Cell::U64(u64::try_from(*i).map_err(|_| format!("{i} is out of range for u64"))?)
            }
            (FieldType::F64, toml::Value::Float(f)) => Cell::F64(*f),
            (FieldType::F64, toml::Value::Integer(i)) => Cell::F64(*i as f64),
            (FieldType::Bool, toml::Value::Boolean(b)) => Cell::Bool(*b),
            (FieldType::Symbol | FieldType::Str, toml::Value::String(s)) => {
                let (o, l) = self.push_text(s.as_bytes());
                Cell::Text(o, l)
            }
            _ => return Err(bad()),
        })
    }
}

fn article(t: FieldType) -> &'static str {
    match t {
        FieldType::I64 => "an i64",
        FieldType::U64 => "a u64",
        FieldType::F64 => "an f64",
        FieldType::Bool => "a bool",
        FieldType::Symbol => "a symbol",
        FieldType::Str => "a string",
        FieldType::Timestamp => "a timestamp",
    }
}

/// The lookup key for an integer value against a table keyed by `key`.
#[inline]
pub fn int_lookup(key: FieldType, v: i128) -> Option<KeyRef<'static>> {
    if int_key(key) {
        Some(KeyRef::Int(v))
    } else if key == FieldType::F64 {
        KeyRef::float(v as f64)
    } else {
        None
    }
}

/// The lookup key for a float value against a table keyed by `key`.
#[inline]
pub fn float_lookup(key: FieldType, v: f64) -> Option<KeyRef<'static>> {
    if key == FieldType::F64 {
        KeyRef::float(v)
    } else if int_key(key) && v.fract() == 0.0 && v.abs() < 1.7e38 {
        Some(KeyRef::Int(v as i128))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn def(key: (&str, FieldType), columns: &[(&str, FieldType)]) -> TableDef {
        TableDef {
            name: "t".into(),
            key_field: key.0.into(),
            key_type: key.1,
            columns: columns.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
            keys: Vec::new(),
            rows: Vec::new(),
            file: None,
            max_rows: 1000,
            line: 1,
        }
    }

    #[test]
    fn set_of_integers_matches_across_types() {
        let mut d = def(("symbol", FieldType::U64), &[]);
        d.keys = [1, 2, 3, 5, 8]
            .iter()
            .map(|&i| toml::Value::Integer(i))
            .collect();
        let t = Table::load(&d).unwrap();
        assert_eq!(t.len(), 5);
        assert!(t.find(KeyRef::Int(5)).is_some());
        assert!(t.find(KeyRef::Int(4)).is_none());
        assert_eq!(
            float_lookup(FieldType::U64, 8.0).and_then(|k| t.find(k)),
            Some(4)
        );
        assert_eq!(float_lookup(FieldType::U64, 8.5), None);
    }

    #[test]
    fn map_from_the_example_csv() {
        let mut d = def(
            ("symbol", FieldType::U64),
            &[("sector", FieldType::Symbol), ("lot", FieldType::I64)],
        );
        d.file = Some(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/examples/instruments.csv"),
        );
        let t = Table::load(&d).unwrap();
        assert_eq!(t.len(), 100);
        let r = t.find(KeyRef::Int(5)).unwrap();
        let Cell::Text(o, l) = t.cell(0, r) else {
            panic!()
        };
        assert_eq!(t.text(o, l), b"tech");
        assert_eq!(t.cell(1, r), Cell::I64(100));
    }

    #[test]
    fn errors_name_table_file_and_row() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.csv");
        std::fs::write(&p, "device,owner,floor\nd-1,a,1\nd-2,b,x\n").unwrap();
        let mut d = def(
            ("device", FieldType::Symbol),
            &[("owner", FieldType::Symbol), ("floor", FieldType::I64)],
        );
        d.file = Some(p.clone());
        let e = Table::load(&d).unwrap_err();
        assert!(
            e.starts_with("table t: ") && e.ends_with("d.csv:3: floor: \"x\" is not an i64"),
            "{e}"
        );
        std::fs::write(&p, "device,owner,floor\nd-1,a,1\nd-1,b,2\n").unwrap();
        let e = Table::load(&d).unwrap_err();
        assert!(e.ends_with("d.csv:3: duplicate key \"d-1\""), "{e}");
        let mut d = def(("k", FieldType::I64), &[]);
        d.max_rows = 2;
        d.keys = (0..3).map(toml::Value::Integer).collect();
        assert!(
            Table::load(&d)
                .unwrap_err()
                .contains("more than max_rows = 2 rows")
        );
    }

    #[test]
    fn float_keys_fold_negative_zero_and_refuse_nan() {
        let mut d = def(("k", FieldType::F64), &[]);
        d.keys = vec![toml::Value::Float(-0.0), toml::Value::Float(1.5)];
        let t = Table::load(&d).unwrap();
        assert!(t.find(KeyRef::float(0.0).unwrap()).is_some());
        assert!(KeyRef::float(f64::NAN).is_none());
        assert_eq!(
            int_lookup(FieldType::F64, 0).and_then(|k| t.find(k)),
            Some(0)
        );
    }
}
