//! The node's own address, as Envoy's `local_info` knows it: what a proxy appends to
//! `x-forwarded-for` instead of a loopback peer's address, so the upstream sees a hop that
//! means something off this machine.
//!
//! Envoy takes the first non-loopback address of the host's interfaces. Here the kernel is
//! asked which source address it would use towards a documentation-only address (a UDP
//! `connect` sends nothing): on a host with one interface and a default route that is the
//! same address. With no route at all it is the loopback address, as in Envoy.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::OnceLock;

/// Looked up once per process.
pub fn local_address() -> IpAddr {
    static ADDRESS: OnceLock<IpAddr> = OnceLock::new();
    *ADDRESS.get_or_init(|| {
        // 198.51.100.0/24 is TEST-NET-2 (RFC 5737): routed like any remote address, owned
        // by nobody.
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .and_then(|s| s.connect((Ipv4Addr::new(198, 51, 100, 1), 9)).map(|()| s))
            .and_then(|s| s.local_addr())
            .map(|a| a.ip())
            .ok()
            .filter(|ip| !ip.is_unspecified())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_stable_and_specified() {
        let a = super::local_address();
        assert!(!a.is_unspecified());
        assert_eq!(a, super::local_address());
    }
}
