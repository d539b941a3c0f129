//! The listening socket and the descriptor limit: the start-up code that talks to the
//! kernel through `libc` rather than through std or mio.
//!
//! - [`listen`]: the listener, made by hand for its `--backlog` (std always asks for 128);
//! - [`effective_backlog`]: what the kernel will really grant (`net.core.somaxconn`);
//! - [`raise_fd_limit`]: the soft `RLIMIT_NOFILE` raised to the hard one, which sizes
//!   the connection limit.
//!
//! Every shard accepts from a clone of the one listener; the accepted connections are
//! the event loops' (`shard.rs`).

use std::net::SocketAddr;

/// The backlog the kernel grants for `--backlog`: it caps the request at
/// `net.core.somaxconn` by itself; a request above the cap is logged, once, at start.
pub(super) fn effective_backlog(backlog: usize) -> usize {
    let somaxconn = crate::config::system_somaxconn();
    if backlog > somaxconn {
        crate::warn!(
            "--backlog is above net.core.somaxconn; the kernel caps it there",
            backlog = backlog,
            somaxconn = somaxconn
        );
    }
    backlog.min(somaxconn)
}

/// The listening socket, made by hand: `std::net::TcpListener::bind` always asks for a
/// backlog of 128, and a reconnect storm of thousands of clients overflows that queue:
/// the kernel drops their SYNs, and each dropped client retries only after 1 s, then
/// 3 s, then 7 s. As std does, `SO_REUSEADDR` lets a restarted server bind while old
/// connections sit in `TIME_WAIT`. The socket is nonblocking and close-on-exec.
pub(super) fn listen(addr: SocketAddr, backlog: usize) -> std::io::Result<std::net::TcpListener> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    fn check(ret: libc::c_int) -> std::io::Result<()> {
        if ret < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
    }
    // Linux sets both flags in the same call that makes the socket; elsewhere they are
    // set on the new descriptor below.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = 0;
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: socket(2) takes no pointers; its result is checked before any use.
    let raw = unsafe { libc::socket(family, libc::SOCK_STREAM | flags, 0) };
    check(raw)?;
    // SAFETY: `raw` is a descriptor just made and owned by nothing else; `OwnedFd`
    // closes it on every early return below.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: fcntl(2) on a descriptor this function owns; takes no pointers.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    let one: libc::c_int = 1;
    // SAFETY: the option value points to a live c_int and its exact size is passed.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    let sockaddr = RawSockAddr::from(addr);
    let (ptr, len) = sockaddr.as_ptr_len();
    // SAFETY: `ptr` points to `len` initialised bytes of a sockaddr of `family`,
    // alive until the call returns.
    check(unsafe { libc::bind(fd.as_raw_fd(), ptr, len) })?;
    // The kernel caps it at net.core.somaxconn by itself.
    let backlog = libc::c_int::try_from(backlog).unwrap_or(libc::c_int::MAX);
    // SAFETY: listen(2) takes no pointers.
    check(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    let listener = std::net::TcpListener::from(fd);
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A socket address as `bind(2)` takes it.
enum RawSockAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl From<SocketAddr> for RawSockAddr {
    fn from(addr: SocketAddr) -> RawSockAddr {
        match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_in is a plain C struct; all zeroes is a valid value
                // (and zeroes the padding and, on the BSDs, the length field).
                let mut raw: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                raw.sin_family = libc::AF_INET as libc::sa_family_t;
                raw.sin_port = a.port().to_be();
                // The octets are already in network order; keep their bytes as they are.
                raw.sin_addr = libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) };
                RawSockAddr::V4(raw)
            }
            SocketAddr::V6(a) => {
                // SAFETY: as above, for sockaddr_in6.
                let mut raw: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                raw.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                raw.sin6_port = a.port().to_be();
                raw.sin6_flowinfo = a.flowinfo();
                raw.sin6_addr = libc::in6_addr { s6_addr: a.ip().octets() };
                raw.sin6_scope_id = a.scope_id();
                RawSockAddr::V6(raw)
            }
        }
    }
}

impl RawSockAddr {
    fn as_ptr_len(&self) -> (*const libc::sockaddr, libc::socklen_t) {
        match self {
            RawSockAddr::V4(a) => (
                (a as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ),
            RawSockAddr::V6(a) => (
                (a as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            ),
        }
    }
}

/// Raises the soft file-descriptor limit to the hard limit; returns the soft limit now.
pub(super) fn raise_fd_limit() -> usize {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;
    use std::os::fd::AsRawFd;

    use std::thread;
    use std::time::Duration;

    use super::*;

    /// Accepts the one pending connection, waiting for it a little.
    fn accept_one(l: &std::net::TcpListener) -> std::net::TcpStream {
        for _ in 0..200 {
            match l.accept() {
                Ok((s, _)) => return s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        panic!("the connection never arrived");
    }

    #[test]
    fn the_listener_is_nonblocking_close_on_exec_and_serves_ipv4_and_ipv6() {
        let l = listen("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        assert_eq!(l.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
        // SAFETY: fcntl(F_GETFD) on a descriptor this test owns.
        let fd_flags = unsafe { libc::fcntl(l.as_raw_fd(), libc::F_GETFD) };
        assert_ne!(fd_flags & libc::FD_CLOEXEC, 0);
        let addr = l.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        accept_one(&l);
        // Not where this host has no IPv6 loopback.
        if let Ok(l6) = listen("[::1]:0".parse().unwrap(), 16) {
            let _client = std::net::TcpStream::connect(l6.local_addr().unwrap()).unwrap();
            accept_one(&l6);
        }
    }

    #[test]
    fn a_port_in_use_is_an_error_and_a_huge_backlog_is_capped_not_refused() {
        let l = listen("127.0.0.1:0".parse().unwrap(), usize::MAX).unwrap();
        let addr = l.local_addr().unwrap();
        assert_eq!(listen(addr, 16).unwrap_err().kind(), ErrorKind::AddrInUse);
    }
}
