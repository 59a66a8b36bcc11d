//! The worker's io_uring instance and the only place SQEs are pushed.
//!
//! Every operation is armed through a safe method here. Memory the kernel
//! may touch for an operation (a `msghdr` for recvmsg, the 8-byte eventfd
//! buffer, a timeout's timespec) is owned by the [`Ring`] in boxed slots
//! that live as long as the ring: an operation can never outlive what it
//! points at. Receive buffers come from [`super::bufring::BufRing`]s.
//!
//! The ring is created with `SINGLE_ISSUER | DEFER_TASKRUN`: completions are
//! produced only when the worker enters the kernel with `GETEVENTS`, in
//! batches, on the worker's own core — no inter-processor interrupts while
//! it decodes.

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use std::io;
use std::os::fd::RawFd;

/// Completion kinds, the top byte of `user_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Accept = 1,
    Udp = 2,
    Tcp = 3,
    Wake = 4,
    Tick = 5,
    Close = 6,
    Cancel = 7,
}

/// `user_data`: kind (8 bits) | slot generation (24 bits) | index (32 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    pub kind: Kind,
    pub idx: u32,
    pub gen_id: u32,
}

impl Tag {
    pub fn new(kind: Kind, idx: u32, gen_id: u32) -> Tag {
        Tag {
            kind,
            idx,
            gen_id: gen_id & 0xff_ffff,
        }
    }

    #[inline]
    pub fn encode(self) -> u64 {
        (self.kind as u64) << 56 | (self.gen_id as u64 & 0xff_ffff) << 32 | self.idx as u64
    }

    #[inline]
    pub fn decode(ud: u64) -> Option<Tag> {
        let kind = match (ud >> 56) as u8 {
            1 => Kind::Accept,
            2 => Kind::Udp,
            3 => Kind::Tcp,
            4 => Kind::Wake,
            5 => Kind::Tick,
            6 => Kind::Close,
            7 => Kind::Cancel,
            _ => return None,
        };
        Some(Tag {
            kind,
            idx: ud as u32,
            gen_id: (ud >> 32) as u32 & 0xff_ffff,
        })
    }
}

/// Space in each UDP buffer for the `SO_RXQ_OVFL` (24 bytes) and
/// `SCM_TIMESTAMPNS` (32 bytes) control messages.
pub const CONTROL_LEN: usize = 64;

/// A `msghdr` for multishot recvmsg: no name, `CONTROL_LEN` of control.
struct MsgHdr(libc::msghdr);

// SAFETY: the msghdr holds no pointers (iov and name are null; control is
// a length only for multishot recvmsg); it is plain data owned by the ring.
unsafe impl Send for MsgHdr {}

/// A worker's ring and the memory its operations point at.
pub struct Ring {
    uring: IoUring,
    // Boxed: the kernel holds each msghdr's address while the Vec grows.
    #[allow(clippy::vec_box)]
    msghdrs: Vec<Box<MsgHdr>>,
    wake_buf: Box<u64>,
    tick: Box<types::Timespec>,
    /// Operations armed and not yet finished (no final CQE yet).
    pub in_flight: usize,
}

impl Ring {
    /// Creates the ring: `entries` SQEs, a CQ four times that (multishot
    /// receives post many completions per SQE).
    ///
    /// # Errors
    /// io_uring unavailable or too old (`DEFER_TASKRUN` needs Linux 6.1).
    pub fn new(entries: u32) -> io::Result<Ring> {
        let uring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(entries * 4)
            .setup_submit_all()
            .build(entries)?;
        if !uring.params().is_feature_nodrop() || !uring.params().is_feature_ext_arg() {
            return Err(io::Error::other(
                "io_uring lacks NODROP or EXT_ARG (Linux 5.11+ needed)",
            ));
        }
        Ok(Ring {
            uring,
            msghdrs: Vec::new(),
            wake_buf: Box::new(0),
            tick: Box::new(types::Timespec::new().sec(1)),
            in_flight: 0,
        })
    }

    pub fn uring(&self) -> &IoUring {
        &self.uring
    }

    fn push(&mut self, e: squeue::Entry) {
        // SAFETY: every entry pushed here points only at memory the Ring
        // owns for its whole life (msghdrs, wake_buf, tick) or at buffer
        // rings registered on it, which the worker drops after the ring has
        // drained (see BufRing).
        while unsafe { self.uring.submission().push(&e) }.is_err() {
            // The SQ is full: hand what is queued to the kernel.
            let _ = self.uring.submit();
        }
        self.in_flight += 1;
    }

    /// Arms a multishot accept on listener `fd`.
    pub fn accept_multi(&mut self, fd: RawFd, tag: Tag) {
        let e = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
            .build()
            .user_data(tag.encode());
        self.push(e);
    }

    /// Arms a multishot receive on stream `fd` into buffer group `bgid`.
    pub fn recv_multi(&mut self, fd: RawFd, bgid: u16, tag: Tag) {
        let e = opcode::RecvMulti::new(types::Fd(fd), bgid)
            .build()
            .user_data(tag.encode());
        self.push(e);
    }

    /// A `msghdr` slot for a UDP socket's multishot recvmsg; returns its
    /// index for [`Ring::recvmsg_multi`].
    pub fn new_msghdr(&mut self) -> usize {
        // SAFETY: msghdr is plain data; zeroed is valid (null pointers).
        let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
        h.msg_controllen = CONTROL_LEN;
        self.msghdrs.push(Box::new(MsgHdr(h)));
        self.msghdrs.len() - 1
    }

    /// The `msghdr` of slot `i`, for parsing completions.
    pub fn msghdr(&self, i: usize) -> &libc::msghdr {
        &self.msghdrs[i].0
    }

    /// Arms a multishot recvmsg on datagram `fd` using `msghdr` slot `hdr`.
    pub fn recvmsg_multi(&mut self, fd: RawFd, hdr: usize, bgid: u16, tag: Tag) {
        let p: *const libc::msghdr = &self.msghdrs[hdr].0;
        let e = opcode::RecvMsgMulti::new(types::Fd(fd), p, bgid)
            .build()
            .user_data(tag.encode());
        self.push(e);
    }

    /// Arms an 8-byte read of the wake eventfd.
    pub fn read_wake(&mut self, fd: RawFd, tag: Tag) {
        let p: *mut u64 = &mut *self.wake_buf;
        let e = opcode::Read::new(types::Fd(fd), p.cast(), 8)
            .build()
            .user_data(tag.encode());
        self.push(e);
    }

    /// Arms a one-second timeout (housekeeping tick).
    pub fn tick(&mut self, tag: Tag) {
        let p: *const types::Timespec = &*self.tick;
        let e = opcode::Timeout::new(p).build().user_data(tag.encode());
        self.push(e);
    }

    /// Closes `fd` through the ring.
    pub fn close(&mut self, fd: RawFd, tag: Tag) {
        let e = opcode::Close::new(types::Fd(fd))
            .build()
            .user_data(tag.encode());
        self.push(e);
    }

    /// Cancels the operation tagged `target`.
    pub fn cancel(&mut self, target: Tag, tag: Tag) {
        let e = opcode::AsyncCancel::new(target.encode())
            .build()
            .user_data(tag.encode());
        self.push(e);
    }

    /// Submits queued SQEs and runs deferred completions; with `wait`,
    /// sleeps until at least one completion is ready.
    ///
    /// # Errors
    /// A failed `io_uring_enter` other than an interruption.
    pub fn enter(&mut self, wait: bool) -> io::Result<()> {
        let want = usize::from(wait);
        let to_submit = self.uring.submission().len() as u32;
        // GETEVENTS always: with DEFER_TASKRUN that is what runs completions.
        let flags = io_uring::EnterFlags::GETEVENTS.bits();
        // SAFETY: no extra argument is passed (arg = None, size 0).
        let r = unsafe {
            self.uring
                .submitter()
                .enter::<libc::sigset_t>(to_submit, want as u32, flags, None)
        };
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EINTR)
                    || e.raw_os_error() == Some(libc::EBUSY) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Appends completions while `out` has spare capacity (it never grows).
    #[inline]
    pub fn reap(&mut self, out: &mut Vec<cqueue::Entry>) {
        let cap = out.capacity() - out.len();
        let mut cq = self.uring.completion();
        cq.sync();
        for e in cq.by_ref().take(cap) {
            out.push(e);
        }
    }
}

/// Whether the completion ends its operation (no more CQEs will carry its
/// tag).
#[inline]
pub fn is_final(flags: u32) -> bool {
    !cqueue::more(flags)
}
