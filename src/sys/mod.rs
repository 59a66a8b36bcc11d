//! Every syscall wrapper the appliance uses outside io_uring; most `unsafe`
//! lives here, each block next to the invariant it relies on.
//!
//! All of this runs at startup or on cold paths (connection setup, wake-ups
//! from the control thread): the data path itself goes through the ring.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A `sockaddr_storage` and its length for `addr`.
fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(ss).cast::<libc::sockaddr_in>(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe {
                std::ptr::write(
                    std::ptr::addr_of_mut!(ss).cast::<libc::sockaddr_in6>(),
                    sin6,
                )
            };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `v` outlives the call; the length matches its type.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::addr_of!(v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` outlive the call and describe a c_int.
    cvt(unsafe { libc::getsockopt(fd, level, name, std::ptr::addr_of_mut!(v).cast(), &mut len) })?;
    Ok(v)
}

fn socket(addr: &SocketAddr, ty: libc::c_int) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall; the result is checked.
    let fd =
        cvt(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) })?;
    // SAFETY: `fd` is a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bind(fd: RawFd, addr: &SocketAddr) -> io::Result<()> {
    let (ss, len) = sockaddr(addr);
    // SAFETY: `ss` holds a valid sockaddr of length `len`.
    cvt(unsafe { libc::bind(fd, std::ptr::addr_of!(ss).cast(), len) }).map(drop)
}

/// The address a socket is bound to (resolves port 0).
pub fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: zeroed sockaddr_storage is valid; the kernel fills it.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `ss`/`len` describe a buffer large enough for any address.
    cvt(unsafe { libc::getsockname(fd, std::ptr::addr_of_mut!(ss).cast(), &mut len) })?;
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*std::ptr::addr_of!(ss).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Ok(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*std::ptr::addr_of!(ss).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::new(ip.into(), u16::from_be(sin6.sin6_port)))
        }
        f => Err(io::Error::other(format!("unexpected address family {f}"))),
    }
}

/// A UDP socket for one shard: `SO_REUSEPORT` (the shards of this process
/// share the address), the receive buffer, `SO_RXQ_OVFL` so every
/// datagram reports the socket's cumulative kernel drop count, and
/// `SO_TIMESTAMPNS` so it carries the kernel's receive time.
pub fn udp_socket(addr: &SocketAddr, rcvbuf_bytes: u64) -> io::Result<OwnedFd> {
    let fd = socket(addr, libc::SOCK_DGRAM)?;
    let raw = fd.as_raw_fd();
    setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    set_rcvbuf(raw, rcvbuf_bytes)?;
    setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)?;
    // The kernel's receive time of each datagram (CLOCK_REALTIME), for the
    // kernel → worker part of the latency.
    setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
    bind(raw, addr)?;
    Ok(fd)
}

/// A TCP listener for one shard, with `SO_REUSEPORT`.
pub fn tcp_listener(addr: &SocketAddr, rcvbuf_bytes: u64) -> io::Result<OwnedFd> {
    let fd = socket(addr, libc::SOCK_STREAM)?;
    let raw = fd.as_raw_fd();
    setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    // Inherited by accepted sockets.
    set_rcvbuf(raw, rcvbuf_bytes)?;
    bind(raw, addr)?;
    // SAFETY: plain syscall on a socket we own.
    cvt(unsafe { libc::listen(raw, 4096) })?;
    Ok(fd)
}

/// Sets `SO_RCVBUF`, and `SO_RCVBUFFORCE` when running with the privilege
/// to exceed `net.core.rmem_max`.
fn set_rcvbuf(fd: RawFd, bytes: u64) -> io::Result<()> {
    let v = bytes.min(i32::MAX as u64 / 2) as libc::c_int;
    if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, v).is_err() {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, v)?;
    }
    Ok(())
}

/// The socket's cumulative count of dropped packets (`SK_MEMINFO_DROPS`,
/// the counter `SO_RXQ_OVFL` reports with each datagram). Read on the
/// housekeeping tick, so drops after the last datagram are counted too.
/// Sends each of `bufs` (at most 64) as one datagram on the connected UDP
/// socket `fd` with one `sendmmsg(2)`; returns how many left. For the load
/// generator and benches, which send many datagrams per syscall.
///
/// # Errors
/// The kernel's, when not even the first datagram left (e.g. `ENOBUFS`).
pub fn sendmmsg(fd: RawFd, bufs: &[&[u8]]) -> io::Result<usize> {
    const MAX: usize = 64;
    let n = bufs.len().min(MAX);
    // SAFETY: iovec and mmsghdr are plain data; all-zero is valid for both.
    let mut iov: [libc::iovec; MAX] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        iov[i] = libc::iovec {
            iov_base: bufs[i].as_ptr() as *mut libc::c_void,
            iov_len: bufs[i].len(),
        };
        msgs[i].msg_hdr.msg_iov = &mut iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `msgs[..n]` are valid headers whose iovecs point into `bufs`,
    // alive for the call; the socket is connected, so no address is needed.
    let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

pub fn socket_drops(fd: RawFd) -> io::Result<u32> {
    let mut info = [0u32; 16];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info`/`len` describe a writable buffer large enough for the
    // kernel's SK_MEMINFO_VARS u32 values.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    Ok(info[libc::SK_MEMINFO_DROPS as usize])
}

/// The receive buffer the kernel granted (it doubles the request).
pub fn rcvbuf(fd: RawFd) -> io::Result<u64> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF).map(|v| v as u64)
}

/// An exclusive claim on a listen address across processes: an abstract
/// unix socket named after it. `SO_REUSEPORT` lets any process of the same
/// user join a port group; this claim makes a second appliance fail with
/// "address in use" instead. Abstract names live in the network namespace,
/// like ports, and vanish with the process, so nothing is left behind.
pub fn claim_address(kind: &str, addr: &SocketAddr) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked.
    let fd =
        cvt(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a new descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = format!("mutstream/{kind}/{addr}");
    // SAFETY: sockaddr_un is plain data; all-zero is valid.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    // sun_path[0] = 0 selects the abstract namespace.
    let bytes = name.as_bytes();
    assert!(
        bytes.len() < sun.sun_path.len() - 1,
        "address names are short"
    );
    for (i, &b) in bytes.iter().enumerate() {
        sun.sun_path[i + 1] = b as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + bytes.len();
    // SAFETY: `sun` is a valid sockaddr_un of length `len`.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(sun).cast(),
            len as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

/// A non-blocking eventfd, used to wake a parked worker.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: `fd` is a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd (from the control thread; never a worker).
pub fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64. EAGAIN (counter saturated)
    // still leaves the reader woken, so the result is ignored.
    let _ = unsafe { libc::write(fd, std::ptr::addr_of!(one).cast(), 8) };
}

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME, through the vDSO).
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Nanoseconds of CLOCK_MONOTONIC (for intervals and deadlines).
#[inline]
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Lets the calling thread run on `cores` only, or on every online core
/// when `cores` is empty (a thread inherits its creator's mask, so a
/// control-plane thread resets it rather than trust where it came from).
pub fn allow_cores(cores: &[usize]) {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let all: Vec<usize> = if cores.is_empty() {
        // SAFETY: sysconf has no memory-safety preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
        (0..n).collect()
    } else {
        cores.to_vec()
    };
    for c in all {
        if c < libc::CPU_SETSIZE as usize {
            // SAFETY: `c` is below CPU_SETSIZE, inside `set`.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the
    // calling thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        tracing::debug!("sched_setaffinity: {}", std::io::Error::last_os_error());
    }
}

/// The kernel thread id of the caller (for `/proc/self/task/TID`).
pub fn gettid() -> i32 {
    // SAFETY: gettid has no failure mode.
    unsafe { libc::gettid() }
}

/// Blocks the signals the control thread handles in the calling thread, so
/// they are never delivered to a worker (a signal would interrupt its
/// `io_uring_enter`).
pub fn block_control_signals() {
    // SAFETY: sigset_t is plain data; all-zero is a valid value to
    // initialise with sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: as above; `s` is a valid signal number.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    // SAFETY: `set` is initialised; the old mask is not requested.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_is_exclusive_and_released() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let tag = format!("test-{}", std::process::id());
        let first = claim_address(&tag, &a).unwrap();
        let second = claim_address(&tag, &a).unwrap_err();
        assert_eq!(second.kind(), io::ErrorKind::AddrInUse);
        drop(first);
        claim_address(&tag, &a).unwrap();
    }

    #[test]
    fn reuseport_shards_share_a_port() {
        let a: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let s0 = tcp_listener(&a, 1 << 20).unwrap();
        let bound = local_addr(s0.as_raw_fd()).unwrap();
        assert_ne!(bound.port(), 0);
        let _s1 = tcp_listener(&bound, 1 << 20).unwrap();
        let u0 = udp_socket(&a, 1 << 20).unwrap();
        let ub = local_addr(u0.as_raw_fd()).unwrap();
        let _u1 = udp_socket(&ub, 1 << 20).unwrap();
        assert!(rcvbuf(u0.as_raw_fd()).unwrap() >= 1 << 20);
    }
}
