//! A provided buffer ring (`IORING_REGISTER_PBUF_RING`).
//!
//! The kernel picks a buffer from the ring for each receive and names it in
//! the completion; the worker reads it, copies any partial frame out, and
//! gives the buffer back at once with [`BufRing::recycle`]. Returns are
//! published to the kernel with one Release store of the ring's tail per
//! completion batch ([`BufRing::publish`]).
//!
//! Ownership: buffer `bid` belongs to the kernel from the moment it is in
//! the ring until a completion names it, then to the worker until it is
//! recycled. Both mappings outlive the registration: the ring is
//! unregistered (or the io_uring instance torn down after every operation
//! has completed) before they are unmapped.

use io_uring::types::BufRingEntry;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

/// An anonymous, private, pre-faulted mapping.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: an anonymous private mapping of `len` bytes; the result
        // is checked. MAP_POPULATE faults the pages in now, not on the
        // first receive.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from a successful mmap; nothing refers
        // to the mapping any more (see the module's ownership notes).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A registered ring of `entries` buffers of `size` bytes each.
pub struct BufRing {
    ring: Mapping,
    bufs: Mapping,
    entries: u16,
    size: u32,
    bgid: u16,
    /// Our copy of the tail: entries published to the kernel.
    tail: u16,
    /// Buffers recycled since the last publish.
    pending: u16,
}

// SAFETY: a BufRing belongs to one worker thread; it is built on that
// thread and never shared.
unsafe impl Send for BufRing {}

impl BufRing {
    /// Maps `entries` (a power of two ≤ 32768) buffers of `size` bytes,
    /// fills the ring with all of them and registers it as group `bgid`.
    ///
    /// # Errors
    /// Mapping or registration failure (a kernel without buffer rings).
    pub fn new(
        uring: &io_uring::IoUring,
        bgid: u16,
        entries: u16,
        size: u32,
    ) -> io::Result<BufRing> {
        assert!(
            entries.is_power_of_two(),
            "recv_buffers validated in config"
        );
        let ring_len = (entries as usize * std::mem::size_of::<BufRingEntry>()).max(4096);
        let ring = Mapping::new(ring_len)?;
        let bufs = Mapping::new(entries as usize * size as usize)?;
        let mut br = BufRing {
            ring,
            bufs,
            entries,
            size,
            bgid,
            tail: 0,
            pending: 0,
        };
        for bid in 0..entries {
            br.recycle(bid);
        }
        br.publish();
        // SAFETY: the ring mapping is page-aligned, `entries` entries long,
        // and lives until this BufRing is dropped, which happens only after
        // the io_uring instance has no operation in flight.
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(br.ring.ptr as u64, entries, bgid, 0)?;
        }
        Ok(br)
    }

    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    pub fn size(&self) -> u32 {
        self.size
    }

    /// The first `len` bytes of buffer `bid`.
    ///
    /// # Safety
    /// `bid` must have been named by a completion and not recycled since
    /// (the kernel does not write it meanwhile), and `len` must be at most
    /// the completion's result.
    // SAFETY: callers uphold the contract under `# Safety` above.
    #[inline]
    pub unsafe fn buf(&self, bid: u16, len: usize) -> &[u8] {
        assert!(
            bid < self.entries && len <= self.size as usize,
            "completion values in range"
        );
        // SAFETY: `bid < entries` (asserted), so the offset stays inside
        // the buffer mapping.
        let p = unsafe { self.bufs.ptr.add(bid as usize * self.size as usize) };
        // SAFETY: `len <= size` (asserted), so the slice lies inside buffer
        // `bid`; the caller guarantees the kernel does not write it while we
        // hold it.
        unsafe { std::slice::from_raw_parts(p, len) }
    }

    /// Gives buffer `bid` back (visible to the kernel after `publish`).
    #[inline]
    pub fn recycle(&mut self, bid: u16) {
        debug_assert!(bid < self.entries);
        let idx = (self.tail.wrapping_add(self.pending) & (self.entries - 1)) as usize;
        // SAFETY: `idx < entries`: the entry lies inside the ring mapping.
        let p = unsafe { self.ring.ptr.cast::<BufRingEntry>().add(idx) };
        // SAFETY: the kernel only reads entries between its head and our
        // published tail, and this one is past the tail: it is ours.
        let e = unsafe { &mut *p };
        // SAFETY: buffer `bid` lies inside the buffer mapping.
        let addr = unsafe { self.bufs.ptr.add(bid as usize * self.size as usize) };
        e.set_addr(addr as u64);
        e.set_len(self.size);
        e.set_bid(bid);
        self.pending += 1;
    }

    /// Publishes recycled buffers to the kernel.
    #[inline]
    pub fn publish(&mut self) {
        if self.pending == 0 {
            return;
        }
        self.tail = self.tail.wrapping_add(self.pending);
        self.pending = 0;
        // SAFETY: the ring mapping starts with an initialised entry 0.
        let tail_ptr = unsafe { BufRingEntry::tail(self.ring.ptr.cast()) }.cast_mut();
        // SAFETY: the tail is the `resv` field of entry 0, a u16 inside the
        // ring mapping, aligned to 2, only ever accessed atomically (by us
        // here, by the kernel with smp_load_acquire).
        let tail = unsafe { AtomicU16::from_ptr(tail_ptr) };
        // Pairs with the kernel's smp_load_acquire of the tail: the entries
        // written by `recycle` are visible before the new tail.
        tail.store(self.tail, Ordering::Release);
    }
}
