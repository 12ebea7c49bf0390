//! The upstreams of the differential test, all in this process on free ports: echo backends
//! that answer with JSON naming themselves and describing the request they received, a
//! flaky one that fails the first attempt of each request with 503, and a slow one that
//! answers after the route timeout. Also the raw HTTP/1.1 client both proxies are probed
//! with, which keeps every response header (repeats included) for comparison.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bumped between the Envoy run and the spar proxy run so the flaky backend fails the first
/// attempt of every request again in the second run.
pub static EPOCH: AtomicUsize = AtomicUsize::new(0);

/// How a backend behaves.
#[derive(Clone, Copy)]
pub enum Kind {
    /// Always 200 with the echo body.
    Echo,
    /// 503 on the first attempt of a request (keyed by `x-t-n` and [`EPOCH`]), then 200.
    Flaky,
    /// Sleeps this long, then answers like `Echo`.
    Slow(Duration),
}

/// What a backend received: method, path+query, headers in order (names lowercased).
struct Received {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

/// Starts a keep-alive HTTP/1.1 backend; returns its port.
pub fn start(name: &str, kind: Kind) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let name = name.to_string();
    let seen = Arc::new(Mutex::new(HashSet::<String>::new()));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (name, seen) = (name.clone(), seen.clone());
            std::thread::spawn(move || serve(conn, &name, kind, &seen));
        }
    });
    port
}

fn serve(conn: TcpStream, name: &str, kind: Kind, seen: &Mutex<HashSet<String>>) {
    let mut out = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    while let Some(req) = read_request(&mut r) {
        let key = req
            .headers
            .iter()
            .find(|(k, _)| k == "x-t-n")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let fail = match kind {
            Kind::Flaky => {
                let key = format!("{}:{key}", EPOCH.load(Ordering::SeqCst));
                seen.lock().unwrap().insert(key)
            }
            Kind::Echo => false,
            Kind::Slow(d) => {
                std::thread::sleep(d);
                false
            }
        };
        let resp = if fail {
            let text = "first attempt fails\n";
            format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\n\r\n{text}",
                text.len()
            )
        } else {
            let body = serde_json::json!({
                "backend": name,
                "method": req.method,
                "path": req.path,
                "headers": req.headers,
            })
            .to_string();
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-t-bresp: backend\r\nx-t-bkeep: backend\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<Received> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        if k == "content-length" {
            length = v.parse().unwrap_or(0);
        }
        headers.push((k, v));
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).ok()?;
    Some(Received {
        method,
        path,
        headers,
    })
}

/// A raw response: status, headers (lowercased names, in order), body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header_map(&self) -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in &self.headers {
            m.entry(k.clone()).or_default().push(v.clone());
        }
        m
    }
}

/// One request on a fresh connection (`Connection: close`); status 0 when it failed.
pub fn send(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(String, String)],
) -> Response {
    let failed = Response {
        status: 0,
        headers: Vec::new(),
        body: String::new(),
    };
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return failed;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return failed;
    }
    let raw = read_response(&mut s, method == "HEAD");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Response {
        status,
        headers,
        body,
    }
}

/// Reads one response, stopping when its framing says it is complete: Envoy holds a
/// connection it closes for a few hundred milliseconds up to a second (delayed close), so
/// reading to the end would stall on every local reply.
fn read_response(s: &mut TcpStream, head_request: bool) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let body = &raw[end + 4..];
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let length = head.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            let chunked = head
                .lines()
                .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
            let done = if head_request || status == 204 || status == 304 {
                true
            } else if let Some(n) = length {
                body.len() >= n
            } else if chunked {
                body.ends_with(b"0\r\n\r\n")
            } else {
                false
            };
            if done {
                return raw;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}
