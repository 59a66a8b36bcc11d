//! Segment files: creation with `fallocate`, shared mappings, names.

use memmap2::{Advice, MmapRaw};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// `<first_seq:020>.seg`: names sort in sequence order.
pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The first sequence a segment file name stands for.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The segments of a partition directory, by first sequence.
///
/// # Errors
/// The directory cannot be listed.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Some(seq) = e.file_name().to_str().and_then(parse_segment_name) {
            v.push((seq, e.path()));
        }
    }
    v.sort_unstable_by_key(|&(s, _)| s);
    Ok(v)
}

/// The header of segment file `path`, if it has a valid one.
pub fn read_header(path: &Path) -> Option<super::format::SegmentHeader> {
    use std::io::Read;
    let mut b = [0u8; super::format::SEGMENT_HEADER];
    File::open(path).ok()?.read_exact(&mut b).ok()?;
    super::format::SegmentHeader::decode(&b).ok()
}

/// A partition directory inside a journal directory.
pub fn partition_dir(journal: &Path, shard: u32) -> PathBuf {
    journal.join(format!("shard-{shard}"))
}

/// The partitions of a journal directory, by shard.
///
/// # Errors
/// The directory cannot be listed.
pub fn list_partitions(journal: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(journal)? {
        let e = e?;
        let name = e.file_name();
        let Some(k) = name
            .to_str()
            .and_then(|n| n.strip_prefix("shard-"))
            .and_then(|k| k.parse::<u32>().ok())
        else {
            continue;
        };
        if e.file_type()?.is_dir() {
            v.push((k, e.path()));
        }
    }
    v.sort_unstable_by_key(|&(k, _)| k);
    Ok(v)
}

/// A segment file mapped shared and writable. The writer writes through
/// [`SegmentMap::ptr`]; the journal thread populates pages ahead of it and
/// syncs what it has committed.
#[derive(Debug)]
pub struct SegmentMap {
    map: MmapRaw,
    file: File,
    pub path: PathBuf,
}

impl SegmentMap {
    /// Creates `path` (which must not exist) with `size` bytes reserved by
    /// `fallocate`, so writing into the mapping can never meet a full disk
    /// (no SIGBUS). On failure nothing is left behind.
    ///
    /// # Errors
    /// `ENOSPC` and friends from `fallocate`, or any open/map error.
    pub fn create(path: &Path, size: u64) -> io::Result<SegmentMap> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        let r = reserve(&file, size).and_then(|()| MmapRaw::map_raw(&file));
        match r {
            Ok(map) => Ok(SegmentMap {
                map,
                file,
                path: path.to_path_buf(),
            }),
            Err(e) => {
                drop(file);
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
    }

    /// Maps an existing segment file (its whole current length).
    ///
    /// # Errors
    /// The file cannot be opened or mapped.
    pub fn open(path: &Path) -> io::Result<SegmentMap> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let map = MmapRaw::map_raw(&file)?;
        Ok(SegmentMap {
            map,
            file,
            path: path.to_path_buf(),
        })
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The start of the mapping (page-aligned).
    #[inline]
    pub fn ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The mapped bytes as a slice.
    ///
    /// # Safety
    /// No thread or process may write the mapping while the slice lives
    /// (recovery runs before the writer starts; tests read quiescent
    /// files).
    pub unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes for as long as
        // `self` lives; the caller guarantees no concurrent writes.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.map.len()) }
    }

    /// Faults `[off, off + len)` in writable, so the writer's stores do not
    /// fault. Best effort: a kernel without `MADV_POPULATE_WRITE` (< 5.14)
    /// leaves the first touch to the writer.
    pub fn populate(&self, off: usize, len: usize) {
        let (off, len) = page_range(off, len, self.len());
        if len > 0 {
            let _ = self.map.advise_range(Advice::PopulateWrite, off, len);
        }
    }

    /// `msync(MS_SYNC)` of `[off, off + len)`, widened to whole pages.
    ///
    /// # Errors
    /// The kernel's error (EIO).
    pub fn sync(&self, off: usize, len: usize) -> io::Result<()> {
        let (off, len) = page_range(off, len, self.len());
        if len == 0 {
            return Ok(());
        }
        self.map.flush_range(off, len)
    }

    /// `fdatasync` of the whole file.
    ///
    /// # Errors
    /// The kernel's error.
    pub fn sync_all(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// `[off, off+len)` widened to page boundaries and clipped to `total`.
fn page_range(off: usize, len: usize, total: usize) -> (usize, usize) {
    const PAGE: usize = 4096;
    let start = off / PAGE * PAGE;
    let end = (off + len).min(total);
    if end <= start {
        return (start, 0);
    }
    (start, end - start)
}

/// Reserves `size` bytes of disk for `file` (extending it).
fn reserve(file: &File, size: u64) -> io::Result<()> {
    // SAFETY: a valid open descriptor; fallocate only reads its arguments.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size as libc::off_t) };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        // A filesystem without fallocate: write the zeros ourselves, so
        // the blocks exist before the mapping is written.
        use std::io::Write;
        let zeros = vec![0u8; 1 << 20];
        let mut left = size;
        let mut w = file;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            w.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        return Ok(());
    }
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse() {
        assert_eq!(segment_name(42), "00000000000000000042.seg");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("42.seg"), None);
        assert_eq!(parse_segment_name(".prep-1"), None);
        assert!(segment_name(9) < segment_name(10));
    }

    #[test]
    fn created_segments_are_reserved_and_zero() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.seg");
        let s = SegmentMap::create(&p, 1 << 20).unwrap();
        assert_eq!(s.len(), 1 << 20);
        s.populate(0, 1 << 20);
        // SAFETY: nothing else writes this fresh file.
        assert!(unsafe { s.bytes() }.iter().all(|&b| b == 0));
        assert!(SegmentMap::create(&p, 1 << 20).is_err(), "create_new");
    }
}
