//! The SOCKS5 handshake (RFC 1928), no authentication, CONNECT only: what `ALL_PROXY=
//! socks5h://…` clients (curl, most HTTP libraries) speak. The proxy resolves names itself
//! (`socks5h`), so mesh names work without the application resolving them.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reply codes (RFC 1928 section 6).
pub const SUCCEEDED: u8 = 0x00;
pub const GENERAL_FAILURE: u8 = 0x01;
pub const NOT_ALLOWED: u8 = 0x02;
pub const HOST_UNREACHABLE: u8 = 0x04;
pub const COMMAND_NOT_SUPPORTED: u8 = 0x07;
pub const ADDRESS_NOT_SUPPORTED: u8 = 0x08;

#[derive(Debug, thiserror::Error)]
pub enum SocksError {
    #[error("SOCKS5 handshake: {0}")]
    Io(#[from] std::io::Error),
    #[error("not SOCKS version 5 (first byte {0:#04x})")]
    Version(u8),
    #[error("the client offers no method this proxy accepts (only 'no authentication')")]
    NoAcceptableMethod,
    #[error("SOCKS5 command {0} is not supported (only CONNECT)")]
    Command(u8),
    #[error("SOCKS5 address type {0} is not supported")]
    AddressType(u8),
}

/// What the client asked to be connected to.
pub struct Target {
    pub host: String,
    pub port: u16,
}

/// Reads the greeting and the request; answers the method choice, and on a bad request
/// the matching error reply.
pub async fn handshake(s: &mut TcpStream) -> Result<Target, SocksError> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(SocksError::Version(head[0]));
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut methods).await?;
    if !methods.contains(&0) {
        s.write_all(&[5, 0xff]).await?;
        return Err(SocksError::NoAcceptableMethod);
    }
    s.write_all(&[5, 0]).await?;
    let mut req = [0u8; 4];
    s.read_exact(&mut req).await?;
    if req[0] != 5 {
        return Err(SocksError::Version(req[0]));
    }
    if req[1] != 1 {
        reply(s, COMMAND_NOT_SUPPORTED).await?;
        return Err(SocksError::Command(req[1]));
    }
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            s.read_exact(&mut a).await?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        4 => {
            let mut a = [0u8; 16];
            s.read_exact(&mut a).await?;
            std::net::Ipv6Addr::from(a).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0])];
            s.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
        other => {
            reply(s, ADDRESS_NOT_SUPPORTED).await?;
            return Err(SocksError::AddressType(other));
        }
    };
    let mut port = [0u8; 2];
    s.read_exact(&mut port).await?;
    Ok(Target {
        host,
        port: u16::from_be_bytes(port),
    })
}

/// The reply to the request; the bound address is left zero (clients do not use it for
/// CONNECT).
pub async fn reply(s: &mut TcpStream, code: u8) -> std::io::Result<()> {
    s.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await
}
