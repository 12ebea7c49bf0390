//! `CONNECT host:port` (RFC 9110 section 9.3.6), read straight off the socket so that the
//! tunnel that follows is the same plain TCP stream a captured connection is: the
//! listener's protocol detection, routes and policies then apply to what goes through it.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest CONNECT head accepted (Envoy's default header limit is 60 KiB; a CONNECT
/// head is a line and a few headers).
const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("reading the CONNECT request: {0}")]
    Io(#[from] std::io::Error),
    #[error("the CONNECT request head is over {MAX_HEAD} bytes")]
    TooLong,
    #[error("the CONNECT target {0:?} is not host:port")]
    Target(String),
}

/// Consumes the request head (and nothing after it: a byte at a time, since what follows
/// belongs to the tunnel) and returns the target authority.
pub async fn read_head(s: &mut TcpStream) -> Result<(String, u16), ConnectError> {
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() == MAX_HEAD {
            return Err(ConnectError::TooLong);
        }
        head.push(s.read_u8().await?);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let target = line.split(' ').nth(1).unwrap_or_default();
    split_authority(target).ok_or_else(|| ConnectError::Target(target.into()))
}

/// `host:port` or `[v6]:port`.
pub fn split_authority(a: &str) -> Option<(String, u16)> {
    let (host, port) = a.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port))
}
