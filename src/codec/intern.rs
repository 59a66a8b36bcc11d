//! Per-shard string interning for `symbol` fields.
//!
//! Each shard owns one [`Interner`]; ids are meaningful only within it, so
//! they never leave the shard: sinks receive the bytes, and anything shared
//! between shards (tables, `hash()`) works on values.
//!
//! Lookups of known strings do not allocate. Interning a new string appends
//! to two vectors that only grow, bounded by `max_symbols`; once a feed's
//! symbols are known the path is allocation-free.

use hashbrown::HashTable;
use std::hash::BuildHasher;

/// An append-only string table with `u32` ids.
pub struct Interner {
    table: HashTable<u32>,
    spans: Vec<(u32, u32)>,
    bytes: Vec<u8>,
    hasher: foldhash::fast::FixedState,
    max: u32,
}

impl Interner {
    /// An empty table admitting at most `max` distinct strings.
    pub fn new(max: u32) -> Interner {
        let initial = (max as usize).min(4096);
        Interner {
            table: HashTable::with_capacity(initial),
            spans: Vec::with_capacity(initial),
            bytes: Vec::with_capacity(initial * 16),
            hasher: foldhash::fast::FixedState::with_seed(0x6d75_7473),
            max,
        }
    }

    #[inline]
    fn hash(&self, s: &[u8]) -> u64 {
        self.hasher.hash_one(s)
    }

    /// The id of `s`, interning it if new; `None` once `max` strings exist.
    #[inline]
    pub fn intern(&mut self, s: &[u8]) -> Option<u32> {
        let h = self.hash(s);
        let (spans, bytes) = (&self.spans, &self.bytes);
        let eq = |&id: &u32| {
            let (off, len) = spans[id as usize];
            &bytes[off as usize..(off + len) as usize] == s
        };
        if let Some(&id) = self.table.find(h, eq) {
            return Some(id);
        }
        self.insert_new(h, s)
    }

    #[cold]
    #[inline(never)]
    fn insert_new(&mut self, h: u64, s: &[u8]) -> Option<u32> {
        let id = self.spans.len() as u32;
        if id >= self.max || self.bytes.len() + s.len() > u32::MAX as usize {
            return None;
        }
        let off = self.bytes.len() as u32;
        self.bytes.extend_from_slice(s);
        self.spans.push((off, s.len() as u32));
        let (spans, bytes, hasher) = (&self.spans, &self.bytes, &self.hasher);
        self.table.insert_unique(h, id, |&id| {
            let (off, len) = spans[id as usize];
            hasher.hash_one(&bytes[off as usize..(off + len) as usize])
        });
        Some(id)
    }

    /// The id of `s` if it has been interned.
    #[inline]
    pub fn lookup(&self, s: &[u8]) -> Option<u32> {
        let h = self.hash(s);
        self.table
            .find(h, |&id| {
                let (off, len) = self.spans[id as usize];
                &self.bytes[off as usize..(off + len) as usize] == s
            })
            .copied()
    }

    /// The bytes of symbol `id`.
    ///
    /// # Panics
    /// If `id` was not returned by this interner.
    #[inline]
    pub fn resolve(&self, id: u32) -> &[u8] {
        let (off, len) = self.spans[id as usize];
        &self.bytes[off as usize..(off + len) as usize]
    }

    /// Distinct strings held.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_bounded() {
        let mut t = Interner::new(3);
        let a = t.intern(b"a").unwrap();
        let b = t.intern(b"bb").unwrap();
        assert_ne!(a, b);
        assert_eq!(t.intern(b"a"), Some(a));
        assert_eq!(t.lookup(b"bb"), Some(b));
        assert_eq!(t.lookup(b"zz"), None);
        assert_eq!(t.resolve(b), b"bb");
        t.intern(b"c").unwrap();
        assert_eq!(t.intern(b"d"), None, "max_symbols reached");
        assert_eq!(t.intern(b"c"), Some(2), "known symbols still resolve");
    }

    #[test]
    fn many_symbols_survive_growth() {
        let mut t = Interner::new(100_000);
        for i in 0..20_000u32 {
            assert_eq!(t.intern(format!("s{i}").as_bytes()), Some(i));
        }
        for i in (0..20_000u32).step_by(777) {
            assert_eq!(t.lookup(format!("s{i}").as_bytes()), Some(i));
            assert_eq!(t.resolve(i), format!("s{i}").as_bytes());
        }
    }
}
