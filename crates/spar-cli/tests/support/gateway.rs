//! The test bed of the authorization differentials: an HTTP/1.1 echo backend, a raw HTTP
//! client that writes request targets byte for byte (so paths reach the gateway
//! unnormalized), and a control plane with an ingress gateway in front of the backend,
//! either a real Envoy or `spar proxy --role gateway`, both configured only by Spar.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{spar, ControlPlane, Envoy, WAIT};

/// The Host every request of the test bed carries.
pub const HOST: &str = "echo.example";

/// An HTTP/1.1 backend on a free port. Its body is `backend path=<target>` and then, in
/// name order, ` name=value` for each request header `echo` picks, and ` body=<body>` when
/// the request had one.
pub fn echo_backend(echo: fn(&str) -> bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || serve(conn, echo));
        }
    });
    port
}

fn serve(conn: TcpStream, echo: fn(&str) -> bool) {
    let mut out = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let (mut echoed, mut length) = (Vec::new(), 0usize);
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            let k = k.to_ascii_lowercase();
            if echo(&k) {
                echoed.push(format!(" {k}={}", v.trim()));
            }
            if k == "content-length" {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        echoed.sort();
        if !body.is_empty() {
            echoed.push(format!(" body={}", String::from_utf8_lossy(&body)));
        }
        let body = format!("backend path={path}{}\n", echoed.concat());
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// A response: status (0 when the connection failed), lower-cased headers, body.
#[derive(Debug, Clone)]
pub struct Response {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request, written as given.
pub fn send(port: u16, method: &str, path: &str, host: &str, headers: &[(&str, &str)]) -> Response {
    send_body(port, method, path, host, headers, "")
}

/// [`send`] with a body (and its `content-length`) when `body` is not empty.
pub fn send_body(
    port: u16,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let failed = Response {
        code: 0,
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
    if !body.is_empty() {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    if s.write_all(req.as_bytes()).is_err() {
        return failed;
    }
    // Read the head, then `content-length` bytes: waiting for the close instead would wait
    // out Envoy's delayed_close_timeout (1 s) on every request.
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let mut want: Option<usize> = None;
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            if want.is_none() {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                want = Some(length.map_or(usize::MAX, |n| end + 4 + n));
            }
            if want.is_some_and(|w| raw.len() >= w) {
                break;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        code,
        headers,
        body: body.to_string(),
    }
}

/// A Service `name` in `default` whose one endpoint is 127.0.0.1: per port its name, its
/// port in the mesh and the local port behind it; ends with `---`.
pub fn local_service(name: &str, ports: &[(&str, u16, u16)]) -> String {
    let list = |f: &dyn Fn(&(&str, u16, u16)) -> String| {
        ports.iter().map(f).collect::<Vec<_>>().join(", ")
    };
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{app: {name}}}
  ports: [{}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: default
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{}]
endpoints:
- addresses: [127.0.0.1]
---
"#,
        list(&|(n, p, _)| format!("{{name: {n}, port: {p}}}")),
        list(&|(n, _, local)| format!("{{name: {n}, port: {local}}}")),
    )
}

/// The `echo` Service on `backend` (port 8080 in the mesh), and a Gateway on `gw_port`
/// with a VirtualService sending every host to it.
pub fn echo_registry(backend: u16, gw_port: u16) -> String {
    format!(
        r#"{}apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gw_port}, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: echo, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
  - route: [{{destination: {{host: echo.default.svc.cluster.local, port: {{number: 8080}}}}}}]
"#,
        local_service("echo", &[("http", 8080, backend)])
    )
}

/// Which gateway runs: real Envoy, or `spar proxy` (the differential half).
pub enum Gateway {
    Envoy(Envoy),
    Spar { child: Child, log: PathBuf },
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Gateway::Spar { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Gateway {
    pub fn log(&self) -> String {
        match self {
            Gateway::Envoy(e) => e.log(),
            Gateway::Spar { log, .. } => std::fs::read_to_string(log).unwrap_or_default(),
        }
    }

    /// The last 30 lines of the log, newest first.
    pub fn tail(&self) -> String {
        self.log()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The Envoy gateway (panics for spar proxy).
    pub fn envoy(&self) -> &Envoy {
        match self {
            Gateway::Envoy(e) => e,
            Gateway::Spar { .. } => panic!("this test bed runs spar proxy, not Envoy"),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Gateway::Envoy(_) => "Envoy",
            Gateway::Spar { .. } => "spar proxy",
        }
    }
}

/// A control plane over a config directory and a gateway it configures.
pub struct GatewayMesh {
    _dir: tempfile::TempDir,
    pub cp: ControlPlane,
    pub gateway: Gateway,
    /// The gateway's listener.
    pub port: u16,
}

impl GatewayMesh {
    /// Writes `files` (name, YAML) to a config directory, starts `spar control-plane` on it
    /// with `cp_flags`, then a gateway for workload `gw-<test>` (Envoy from `envoy_bin`,
    /// or spar proxy with `spar_gateway`); returns once the gateway has ACKed every type
    /// without a NACK and answers `probe` with 200. `port` is the gateway's listener (the
    /// registry in `files` names it).
    pub fn launch(
        envoy_bin: &Path,
        test: &str,
        port: u16,
        files: &[(&str, String)],
        cp_flags: &[&str],
        spar_gateway: bool,
        probe: &str,
    ) -> GatewayMesh {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::create_dir(&config).unwrap();
        for (name, yaml) in files {
            std::fs::write(config.join(name), yaml).unwrap();
        }
        let cp = ControlPlane::start(&config, cp_flags);
        let workload = format!("gw-{test}");
        let node =
            format!("router~127.0.0.1~{workload}.istio-system~istio-system.svc.cluster.local");
        let gateway = if spar_gateway {
            let log = dir.path().join("spar-gw.log");
            let child = Command::new(env!("CARGO_BIN_EXE_spar"))
                .args(["proxy", "--role", "gateway", "--workload", &workload])
                .args(["--namespace", "istio-system", "--ip", "127.0.0.1"])
                .args(["--labels", "istio=ingressgateway"])
                .args(["--xds-addr", &cp.xds, "--admin-port", "0"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("spawn spar proxy");
            Gateway::Spar { child, log }
        } else {
            Gateway::Envoy(Envoy::start(
                envoy_bin,
                dir.path(),
                &node,
                &cp.xds,
                "sotw",
                &["istio=ingressgateway"],
            ))
        };
        let who = format!("{workload}.istio-system");
        cp.get_until("/debug/syncz", "the gateway's ACKs of every type", |b| {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(b) else {
                return false;
            };
            let Some(p) = v.as_array().and_then(|a| {
                a.iter()
                    .find(|p| p["proxy"].as_str().is_some_and(|id| id.contains(&who)))
            }) else {
                return false;
            };
            ["cds", "lds", "rds"]
                .iter()
                .all(|t| p["types"][t]["state"] == "SYNCED")
        });
        let out = spar(&["ctl", "proxy-status", "--cp", &cp.monitoring]);
        let table = String::from_utf8_lossy(&out.stdout);
        let row = table.lines().find(|l| l.contains(&who)).expect(&table);
        assert!(
            !row.contains("NACKED") && !row.contains("STALE"),
            "{table}\n{}",
            gateway.log()
        );
        let mesh = GatewayMesh {
            _dir: dir,
            cp,
            gateway,
            port,
        };
        let deadline = Instant::now() + WAIT;
        while send(port, "GET", probe, HOST, &[]).code != 200 {
            assert!(
                Instant::now() < deadline,
                "the {} gateway never answered {probe} with 200; log:\n{}",
                mesh.gateway.name(),
                mesh.gateway.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        mesh
    }
}
