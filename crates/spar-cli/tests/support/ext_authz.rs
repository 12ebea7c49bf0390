//! The external authorizer of the ext_authz differentials: a Python process written for
//! the tests (HTTP, and gRPC with grpcio and hand-encoded protobuf) behaving as Istio's
//! sample ext-authz: allow when the request has `x-ext-authz: allow` (adding
//! `x-ext-authz-check-result: allowed` upstream), else 403 with its body and
//! `x-ext-authz-check-result: denied`; also a custom denial (`/teapot`: 418, another body,
//! a header the provider does not pass to the client) and a failure (`/boom`: 500).
//! `/body` paths are denied with what the authorizer got of the request body
//! (`x-ext-authz-saw-body`, `-` for none) and its `x-envoy-auth-partial-body`
//! (`x-ext-authz-saw-partial`, `none` when absent), and the names of the headers it got
//! (`x-ext-authz-saw-headers`).
//! A TCP check (a `CheckRequest` without a request) is denied when its destination port is
//! one of the deny ports it was started with, else allowed; each is logged as
//! `port=<destination port> principal=<source principal>` in its log file.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::free_port;

pub fn require_peers() -> bool {
    std::env::var("SPAR_REQUIRE_PEERS").as_deref() == Ok("1")
}

/// The authorizer, as Istio's sample ext-authz (HTTP and gRPC in one process).
const AUTHZ_PY: &str = r#"
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DENY_BODY = b"denied by ext_authz for not found header `x-ext-authz: allow` in the request"

def decide(path, get, body=b"", names=()):
    """(status, headers, body) for a request with `path`, header getter `get`, `body` and
    header `names`."""
    if "/body" in path:
        return 403, [("x-ext-authz-saw-body", body.decode("latin-1") or "-"),
                     ("x-ext-authz-saw-partial", get("x-envoy-auth-partial-body") or "none"),
                     ("x-ext-authz-saw-headers", ",".join(sorted(n.lower() for n in names)))], b"body seen"
    if "/boom" in path:
        return 500, [], b"authorizer broke"
    if "/teapot" in path:
        return 418, [("x-ext-authz-check-result", "denied"), ("x-not-for-client", "secret")], b"short and stout"
    if get("x-ext-authz") == "allow":
        return 200, [("x-ext-authz-check-result", "allowed")], b""
    return 403, [("x-ext-authz-check-result", "denied")], DENY_BODY

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def handle_one_request(self):
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            n = int(self.headers.get("content-length") or 0)
            sent = self.rfile.read(n) if n else b""
            status, hs, body = decide(self.path, lambda k: self.headers.get(k), sent, self.headers.keys())
            self.send_response(status)
            for k, v in hs:
                self.send_header(k, v)
            # What the authorizer was sent (the test reads it back from the denial).
            self.send_header("x-ext-authz-saw-path", self.path)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except Exception:
            self.close_connection = True

def varint(b, i):
    shift = n = 0
    while True:
        c = b[i]; i += 1
        n |= (c & 0x7f) << shift; shift += 7
        if c < 0x80:
            return n, i

def fields(b):
    i, out = 0, []
    while i < len(b):
        key, i = varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 2:
            l, i = varint(b, i); v = b[i:i+l]; i += l
        elif wt == 1:
            v = b[i:i+8]; i += 8
        elif wt == 5:
            v = b[i:i+4]; i += 4
        else:
            raise ValueError("wire type %d" % wt)
        out.append((f, v))
    return out

def one(b, n):
    for f, v in fields(b):
        if f == n:
            return v
    return b""

def enc_varint(n):
    out = bytearray()
    while True:
        c = n & 0x7f; n >>= 7
        if n:
            out.append(c | 0x80)
        else:
            out.append(c); return bytes(out)

def ld(f, b):
    return enc_varint(f << 3 | 2) + enc_varint(len(b)) + b

def vi(f, n):
    return enc_varint(f << 3) + enc_varint(n)

def hvo(k, v):
    return ld(1, ld(1, k.encode()) + ld(2, v.encode()))

def tcp_check(attrs):
    dst_port = one(one(one(one(attrs, 2), 1), 1), 3)
    principal = one(one(attrs, 1), 4).decode()
    with LOG_LOCK, open(TCP_LOG, "a") as f:
        f.write("port=%s principal=%s\n" % (dst_port, principal))
    if dst_port in DENY_PORTS:
        return ld(1, vi(1, 7))
    return ld(1, b"")

def check(req, ctx):
    attrs = one(req, 1)
    http = one(one(attrs, 4), 2)
    if not http:
        return tcp_check(attrs)
    headers = {}
    for f, entry in fields(http):
        if f == 3:
            headers[one(entry, 1).decode()] = one(entry, 2).decode()
    path = one(http, 4).decode()
    sent = one(http, 11) or one(http, 12)
    status, hs, body = decide(path, headers.get, sent, headers.keys())
    if status == 500:
        import grpc
        ctx.abort(grpc.StatusCode.UNAVAILABLE, "authorizer broke")
    hs = hs + [("x-ext-authz-saw-path", path)]
    if status == 200:
        return ld(1, b"") + ld(3, b"".join(ld(2, hvo(k, v)) for k, v in hs))
    denied = ld(1, vi(1, status)) + b"".join(ld(2, hvo(k, v)) for k, v in hs) + ld(3, body)
    return ld(1, vi(1, 7)) + ld(2, denied)

http_port, grpc_port = int(sys.argv[1]), int(sys.argv[2])
DENY_PORTS = set(int(p) for p in sys.argv[3].split(",") if p)
TCP_LOG = sys.argv[4]
LOG_LOCK = threading.Lock()
srv = ThreadingHTTPServer(("127.0.0.1", http_port), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
if grpc_port:
    import grpc
    from concurrent import futures
    g = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    g.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "envoy.service.auth.v3.Authorization",
        {"Check": grpc.unary_unary_rpc_method_handler(check)}),))
    g.add_insecure_port("127.0.0.1:%d" % grpc_port)
    g.start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// The authorizer process, killed on drop.
pub struct Authorizer {
    child: Child,
    dir: tempfile::TempDir,
    pub http: u16,
    pub grpc: u16,
}

impl Authorizer {
    /// The TCP checks so far, one `port=<p> principal=<id>` line each.
    pub fn tcp_checks(&self) -> Vec<String> {
        std::fs::read_to_string(self.tcp_log())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn tcp_log(&self) -> PathBuf {
        self.dir.path().join("tcp-checks.log")
    }
}

impl Drop for Authorizer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the authorizer (gRPC too with `grpc`); `None` (after saying why) without python3
/// or grpcio, unless peers are required.
pub fn authorizer(test: &str, grpc: bool) -> Option<Authorizer> {
    authorizer_denying(test, grpc, &[])
}

/// [`authorizer`], denying TCP connections to `deny_ports`.
pub fn authorizer_denying(test: &str, grpc: bool, deny_ports: &[u16]) -> Option<Authorizer> {
    let probe = if grpc { "import grpc" } else { "pass" };
    let ok = Command::new("python3")
        .args(["-c", probe])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let what = if grpc {
            "python3 with grpcio (scripts/install-grpc-peers)"
        } else {
            "python3"
        };
        assert!(
            !require_peers(),
            "{test}: {what} is required (SPAR_REQUIRE_PEERS=1)"
        );
        eprintln!("{test}: skipped: no {what}");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("authz.py");
    std::fs::write(&script, AUTHZ_PY).unwrap();
    let (http, grpc_port) = (free_port(), if grpc { free_port() } else { 0 });
    let deny: Vec<String> = deny_ports.iter().map(u16::to_string).collect();
    let mut child = Command::new("python3")
        .arg(&script)
        .args([http.to_string(), grpc_port.to_string(), deny.join(",")])
        .arg(dir.path().join("tcp-checks.log"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the authorizer");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the authorizer did not start");
    Some(Authorizer {
        child,
        dir,
        http,
        grpc: grpc_port,
    })
}
