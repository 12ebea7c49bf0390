//! Listener filters that look at the first bytes without consuming them: the TLS
//! inspector (is it TLS? which SNI and ALPN?) and the HTTP inspector (HTTP/1.x or h2c?).
//! Reads are `peek`s, so the chosen filter chain sees the stream from its first byte.

use std::time::Duration;

use tokio::net::TcpStream;

/// What the inspectors found.
#[derive(Debug, Default, Clone)]
pub struct Detected {
    /// `tls` or `raw_buffer` (Envoy's names).
    pub transport: &'static str,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// The TLS inspector's verdict (`None`: it did not run or could not decide).
    pub tls_found: Option<bool>,
    /// The HTTP inspector's verdict: `Some("http/1.1" | "h2c")`, `Some("")` for not HTTP,
    /// `None` when it did not run or could not decide.
    pub http: Option<&'static str>,
    /// The first bytes did not come within the timeout (Envoy's
    /// `downstream_pre_cx_timeout`); the connection goes on with what is known.
    pub timed_out: bool,
}

enum Verdict {
    Need,
    Tls {
        sni: Option<String>,
        alpn: Vec<String>,
    },
    NotTls,
}

/// Peeks until the inspectors can decide or `timeout` passes (then: whatever is known,
/// as Istio's `continue_on_listener_filters_timeout`).
pub async fn inspect(stream: &TcpStream, tls: bool, http: bool, timeout: Duration) -> Detected {
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + timeout;
    let mut out = Detected {
        transport: "raw_buffer",
        ..Default::default()
    };
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => return out,
            Err(_) => {
                out.timed_out = true;
                return out;
            }
        };
        let data = &buf[..n];
        let mut undecided = false;
        if tls {
            match client_hello(data) {
                Verdict::Tls { sni, alpn } => {
                    out.transport = "tls";
                    out.tls_found = Some(true);
                    out.sni = sni;
                    out.alpn = alpn;
                    return out;
                }
                Verdict::Need => undecided = true,
                Verdict::NotTls => out.tls_found = Some(false),
            }
        }
        if http && !undecided {
            match http_protocol(data) {
                Some(Some(p)) => {
                    out.http = Some(p);
                    out.alpn = vec![p.to_string()];
                    return out;
                }
                Some(None) => {
                    out.http = Some("");
                    return out;
                }
                None => undecided = true,
            }
        }
        if !undecided || n == 0 || n == buf.len() {
            return out;
        }
        // Bytes are still arriving: peek returns at once with what is there, so wait a
        // little before looking again.
        if tokio::time::Instant::now() >= deadline {
            out.timed_out = true;
            return out;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// HTTP inspector: `Some(Some("h2c"))`, `Some(Some("http/1.1"))`, `Some(None)` for
/// not HTTP, `None` for "need more bytes".
pub fn http_protocol(data: &[u8]) -> Option<Option<&'static str>> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let n = data.len().min(PREFACE.len());
    if data[..n] == PREFACE[..n] {
        return if n == PREFACE.len() {
            Some(Some("h2c"))
        } else {
            None
        };
    }
    let line_end = data.windows(2).position(|w| w == b"\r\n");
    let line = match line_end {
        Some(e) => &data[..e],
        None if data.len() > 8192 => return Some(None),
        None => {
            // Fail fast on bytes no request line can start with.
            return if data.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                None
            } else {
                Some(None)
            };
        }
    };
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Some(None);
    };
    let token = !method.is_empty() && method.iter().all(|b| b.is_ascii_uppercase() || *b == b'-');
    if token && !target.is_empty() && (version == b"HTTP/1.1" || version == b"HTTP/1.0") {
        Some(Some("http/1.1"))
    } else {
        Some(None)
    }
}

struct Reader<'a> {
    d: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.d.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(b[0]) << 8 | usize::from(b[1]))
    }
}

/// TLS inspector: a ClientHello's SNI and ALPN.
fn client_hello(data: &[u8]) -> Verdict {
    if data.is_empty() {
        return Verdict::Need;
    }
    // Handshake record, TLS major version 3.
    if data[0] != 0x16 {
        return Verdict::NotTls;
    }
    if data.len() < 5 {
        return Verdict::Need;
    }
    if data[1] != 3 {
        return Verdict::NotTls;
    }
    let record_len = usize::from(data[3]) << 8 | usize::from(data[4]);
    if data.len() < 5 + record_len {
        return Verdict::Need;
    }
    parse_hello(&data[5..5 + record_len]).unwrap_or(Verdict::Tls {
        sni: None,
        alpn: Vec::new(),
    })
}

fn parse_hello(d: &[u8]) -> Option<Verdict> {
    let mut r = Reader { d, pos: 0 };
    if r.u8()? != 1 {
        return None; // not a ClientHello
    }
    r.take(3)?; // length
    r.take(2 + 32)?; // version, random
    let sid = r.u8()?;
    r.take(sid)?;
    let suites = r.u16()?;
    r.take(suites)?;
    let comp = r.u8()?;
    r.take(comp)?;
    let ext_len = r.u16()?;
    let exts = r.take(ext_len)?;
    let mut e = Reader { d: exts, pos: 0 };
    let (mut sni, mut alpn) = (None, Vec::new());
    while e.pos < exts.len() {
        let kind = e.u16()?;
        let len = e.u16()?;
        let body = e.take(len)?;
        let mut b = Reader { d: body, pos: 0 };
        match kind {
            0 => {
                b.u16()?;
                while b.pos < body.len() {
                    let t = b.u8()?;
                    let n = b.u16()?;
                    let name = b.take(n)?;
                    if t == 0 {
                        sni = Some(String::from_utf8_lossy(name).to_ascii_lowercase());
                    }
                }
            }
            16 => {
                b.u16()?;
                while b.pos < body.len() {
                    let n = b.u8()?;
                    alpn.push(String::from_utf8_lossy(b.take(n)?).into_owned());
                }
            }
            _ => {}
        }
    }
    Some(Verdict::Tls { sni, alpn })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello with SNI `a.example` and ALPN `h2`.
    pub fn hello(sni: &str) -> Vec<u8> {
        let mut ext = Vec::new();
        let name = sni.as_bytes();
        let mut sni_body = vec![];
        sni_body.extend(((name.len() + 3) as u16).to_be_bytes());
        sni_body.push(0);
        sni_body.extend((name.len() as u16).to_be_bytes());
        sni_body.extend(name);
        ext.extend(0u16.to_be_bytes());
        ext.extend((sni_body.len() as u16).to_be_bytes());
        ext.extend(sni_body);
        let alpn = [0u8, 3, 2, b'h', b'2'];
        ext.extend(16u16.to_be_bytes());
        ext.extend((alpn.len() as u16).to_be_bytes());
        ext.extend(alpn);
        let mut hs = vec![3, 3];
        hs.extend([7u8; 32]);
        hs.push(0);
        hs.extend(2u16.to_be_bytes());
        hs.extend([0x13, 0x01]);
        hs.extend([1, 0]);
        hs.extend((ext.len() as u16).to_be_bytes());
        hs.extend(ext);
        let mut msg = vec![1];
        msg.extend(&(hs.len() as u32).to_be_bytes()[1..]);
        msg.extend(hs);
        let mut rec = vec![0x16, 3, 1];
        rec.extend((msg.len() as u16).to_be_bytes());
        rec.extend(msg);
        rec
    }

    #[test]
    fn client_hello_sni_and_alpn() {
        let h = hello("A.Example");
        match client_hello(&h) {
            Verdict::Tls { sni, alpn } => {
                assert_eq!(sni.as_deref(), Some("a.example"));
                assert_eq!(alpn, vec!["h2".to_string()]);
            }
            _ => panic!("not detected"),
        }
        assert!(matches!(client_hello(&h[..10]), Verdict::Need));
        assert!(matches!(
            client_hello(b"GET / HTTP/1.1\r\n"),
            Verdict::NotTls
        ));
    }

    #[test]
    fn http_inspector() {
        assert_eq!(
            http_protocol(b"GET /x HTTP/1.1\r\nHost: a\r\n"),
            Some(Some("http/1.1"))
        );
        assert_eq!(
            http_protocol(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Some(Some("h2c"))
        );
        assert_eq!(http_protocol(b"PRI * HT"), None);
        assert_eq!(http_protocol(b"GET /x HT"), None);
        assert_eq!(http_protocol(b"\x00\x01binary"), Some(None));
        assert_eq!(http_protocol(b"SSH-2.0-OpenSSH\r\n"), Some(None));
    }
}
