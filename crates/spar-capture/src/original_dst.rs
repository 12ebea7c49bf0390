//! The address a connection was going to before iptables REDIRECTed it to the proxy:
//! `getsockopt(SO_ORIGINAL_DST)` at `SOL_IP` (IPv4) or `IP6T_SO_ORIGINAL_DST` at
//! `SOL_IPV6` (IPv6). Both read the connection's conntrack entry.

// The one module allowed `unsafe`: std and socket2 do not expose SO_ORIGINAL_DST, so it is
// read with `libc::getsockopt`. Each call is sound because the kernel writes at most `len`
// bytes into a properly aligned, fully initialised `sockaddr_in`/`sockaddr_in6` that lives
// on this stack frame for the whole call, `len` is exactly that struct's size, and an
// invalid descriptor makes the call fail with EBADF rather than touch memory.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, RawFd};

/// `SO_ORIGINAL_DST` (linux/netfilter_ipv4.h) and `IP6T_SO_ORIGINAL_DST`
/// (linux/netfilter_ipv6/ip6_tables.h) share the value 80.
const SO_ORIGINAL_DST: libc::c_int = 80;

/// Where a redirected connection was going (a `std` or `tokio` `TcpStream`, or any fd).
/// Fails with `ENOENT` when the connection was not redirected (no conntrack NAT entry).
pub fn original_dst(sock: &impl AsFd) -> io::Result<SocketAddr> {
    original_dst_fd(sock.as_fd().as_raw_fd())
}

/// [`original_dst`] for a raw descriptor.
pub fn original_dst_fd(fd: RawFd) -> io::Result<SocketAddr> {
    match domain(fd)? {
        libc::AF_INET => v4(fd),
        // A dual-stack socket may carry an IPv4 connection (v4-mapped): try both.
        libc::AF_INET6 => v6(fd).or_else(|e| v4(fd).map_err(|_| e)),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not an IP socket (address family {other})"),
        )),
    }
}

fn domain(fd: RawFd) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: see the module comment; `value` is a c_int and `len` its size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

fn v4(fd: RawFd) -> io::Result<SocketAddr> {
    let mut addr = libc::sockaddr_in {
        sin_family: 0,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: see the module comment; `addr` is a sockaddr_in and `len` its size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_IP,
            SO_ORIGINAL_DST,
            (&mut addr as *mut libc::sockaddr_in).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
    Ok(SocketAddr::V4(SocketAddrV4::new(
        ip,
        u16::from_be(addr.sin_port),
    )))
}

fn v6(fd: RawFd) -> io::Result<SocketAddr> {
    let mut addr = libc::sockaddr_in6 {
        sin6_family: 0,
        sin6_port: 0,
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr { s6_addr: [0; 16] },
        sin6_scope_id: 0,
    };
    let mut len = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    // SAFETY: see the module comment; `addr` is a sockaddr_in6 and `len` its size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_IPV6,
            SO_ORIGINAL_DST,
            (&mut addr as *mut libc::sockaddr_in6).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let ip = Ipv6Addr::from(addr.sin6_addr.s6_addr);
    Ok(SocketAddr::V6(SocketAddrV6::new(
        ip,
        u16::from_be(addr.sin6_port),
        u32::from_be(addr.sin6_flowinfo),
        addr.sin6_scope_id,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_that_was_not_redirected_reports_its_own_destination_or_none() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = std::net::TcpStream::connect(addr).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        // With conntrack active in this namespace the kernel reports the connection's own
        // (un-NATed) destination; without it, ENOENT (or ENOPROTOOPT without the module).
        match original_dst(&server) {
            Ok(dst) => assert_eq!(dst, addr),
            Err(err) => assert!(
                matches!(
                    err.raw_os_error(),
                    Some(libc::ENOENT) | Some(libc::ENOPROTOOPT)
                ),
                "{err}"
            ),
        }
        drop(client);
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        assert!(original_dst(&udp).is_err());
    }
}
