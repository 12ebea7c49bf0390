//! A pod, for real (root only): an application in its own network namespace calls
//! `curl http://reviews:9080/...` with nothing mesh-aware about it. `spar iptables` captures
//! the connection to the sidecar (`spar proxy`, running as uid 1337 like Istio's proxy), the
//! name resolves through the namespace's hosts file (`/etc/netns/<ns>/hosts`, which
//! `ip netns exec` mounts over /etc/hosts, as a pod's DNS would answer with the service's
//! ClusterIP), and the VirtualService's header match picks the version: `end-user: jason`
//! → v2, anyone else → v1. The two reviews versions are HTTP servers in a second namespace
//! at their own addresses, like other pods; the control plane runs in the pod's namespace,
//! reached over loopback.
//!
//! Fixed ports are safe here: both namespaces are new and private to this test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROXY_UID: &str = "1337";
const APP_UID: &str = "65534";
const VIP: &str = "10.96.77.10";

fn ok(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why this test cannot run here, if it cannot.
fn missing() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        return Some(format!("needs root (euid {euid})"));
    }
    for (tool, arg) in [
        ("ip", "-V"),
        ("iptables-restore", "--version"),
        ("setpriv", "--version"),
        ("curl", "--version"),
        ("python3", "--version"),
    ] {
        if !ok(Command::new(tool).arg(arg)) {
            return Some(format!("`{tool}` is missing"));
        }
    }
    None
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces, processes and hosts file; all removed on drop, also on failure.
struct Pod {
    app: String,
    other: String,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Pod {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.app, &self.other] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
    }
}

impl Pod {
    fn spawn(&mut self, ns: &str, uid: Option<&str>, args: &[&str], log: &str) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]);
        if let Some(uid) = uid {
            cmd.args([
                "setpriv",
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
            ])
            .arg("--clear-groups");
        }
        let log = std::fs::File::create(self.dir.path().join(log)).unwrap();
        let child = cmd
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// curl inside the app namespace as an ordinary user: (status, body).
    fn curl(&self, uid: &str, args: &[&str]) -> (String, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.app, "setpriv"])
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
            ])
            .args(["curl", "-s", "--max-time", "5", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.to_string(), body.trim().to_string())
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for f in ["cp.log", "proxy.log", "v1.log", "v2.log"] {
            let text = std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            all.push_str(&format!("--- {f}\n"));
            for l in tail.into_iter().rev() {
                all.push_str(l);
                all.push('\n');
            }
        }
        all
    }
}

fn mesh() -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  clusterIP: {VIP}\n  selector: {{app: reviews}}\n  ports: [{{name: http, port: 9080}}]\n"
    );
    for (v, ip) in [("v1", "10.98.0.5"), ("v2", "10.98.0.6")] {
        y.push_str(&format!(
            r#"---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: reviews-{v}, namespace: default, labels: {{kubernetes.io/service-name: reviews}}}}
addressType: IPv4
ports: [{{name: http, port: 9080}}]
endpoints: [{{addresses: [{ip}], targetRef: {{kind: Pod, name: reviews-{v}}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: reviews-{v}, namespace: default, labels: {{app: reviews, version: {v}}}, annotations: {{sidecar.istio.io/inject: "false"}}}}
spec: {{containers: [{{name: reviews}}]}}
status: {{podIP: {ip}}}
"#
        ));
    }
    y.push_str(
        r#"---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"#,
    );
    y
}

#[test]
fn plain_curl_in_a_pod_is_captured_and_routed_by_virtual_service() {
    if let Some(why) = missing() {
        assert!(
            std::env::var_os("SPAR_REQUIRE_PEERS").is_none(),
            "SPAR_REQUIRE_PEERS is set but {why}"
        );
        eprintln!("skipping the pod (network namespace) curl test: {why}");
        return;
    }
    let spar = env!("CARGO_BIN_EXE_spar");
    let pid = std::process::id();
    let mut pod = Pod {
        app: format!("spar-pod-{pid}"),
        other: format!("spar-svc-{pid}"),
        children: Vec::new(),
        dir: tempfile::tempdir().unwrap(),
    };
    let (app, other) = (pod.app.clone(), pod.other.clone());
    let (va, vb) = (format!("spa{pid}"), format!("spb{pid}"));
    sh(&["ip", "netns", "add", &app]);
    sh(&["ip", "netns", "add", &other]);
    sh(&[
        "ip", "link", "add", &va, "netns", &app, "type", "veth", "peer", "name", &vb, "netns",
        &other,
    ]);
    sh(&["ip", "-n", &app, "addr", "add", "10.98.0.1/24", "dev", &va]);
    for ip in ["10.98.0.5/24", "10.98.0.6/24"] {
        sh(&["ip", "-n", &other, "addr", "add", ip, "dev", &vb]);
    }
    for (ns, dev) in [(&app, &va), (&other, &vb)] {
        sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    // The ClusterIP needs a route for connect() to get as far as iptables, as in a pod.
    sh(&["ip", "-n", &app, "route", "add", "default", "dev", &va]);
    std::fs::create_dir_all(format!("/etc/netns/{app}")).unwrap();
    std::fs::write(
        format!("/etc/netns/{app}/hosts"),
        format!("127.0.0.1 localhost\n{VIP} reviews reviews.default reviews.default.svc.cluster.local\n"),
    )
    .unwrap();

    // The reviews versions: each serves a file `who` naming itself.
    for (v, ip) in [("v1", "10.98.0.5"), ("v2", "10.98.0.6")] {
        let root = pod.dir.path().join(v);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("who"), format!("reviews-{v}\n")).unwrap();
        let root = root.to_string_lossy().into_owned();
        let args = [
            "python3",
            "-m",
            "http.server",
            "9080",
            "--bind",
            ip,
            "--directory",
            &root,
        ];
        pod.spawn(&other, None, &args, &format!("{v}.log"));
    }
    let config = pod.dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("mesh.yaml"), mesh()).unwrap();
    let config = config.to_string_lossy().into_owned();
    pod.spawn(
        &app,
        None,
        &[
            spar,
            "control-plane",
            "--config-dir",
            &config,
            "--xds-addr",
            "127.0.0.1:15010",
            "--monitoring-addr",
            "127.0.0.1:15014",
        ],
        "cp.log",
    );
    sh(&[spar, "iptables", "--netns", &app, "-u", PROXY_UID]);
    pod.spawn(
        &app,
        Some(PROXY_UID),
        &[
            spar,
            "proxy",
            "--role",
            "sidecar",
            "--namespace",
            "default",
            "--workload",
            "productpage-1",
            "--ip",
            "10.98.0.1",
            "--labels",
            "app=productpage",
            "--xds-addr",
            "127.0.0.1:15010",
            "--admin-port",
            "15000",
        ],
        "proxy.log",
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = pod.curl(APP_UID, &["http://reviews:9080/who"]);
        if code == "200" && body == "reviews-v1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "curl http://reviews:9080/who never reached reviews-v1 (last: {code} {body:?})\n{}",
            pod.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..5 {
        assert_eq!(
            pod.curl(APP_UID, &["http://reviews:9080/who"]),
            ("200".into(), "reviews-v1".into())
        );
        assert_eq!(
            pod.curl(
                APP_UID,
                &["-H", "end-user: jason", "http://reviews.default:9080/who"]
            ),
            ("200".into(), "reviews-v2".into()),
            "{}",
            pod.logs()
        );
    }
    // It really went through the sidecar: the proxy counted the requests.
    let (code, stats) = pod.curl("0", &["http://127.0.0.1:15000/stats/prometheus"]);
    assert_eq!(code, "200");
    let total = stats
        .lines()
        .find_map(|l| l.strip_prefix("envoy_http_downstream_rq_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(total >= 11, "the sidecar saw {total} requests:\n{stats}");
}
