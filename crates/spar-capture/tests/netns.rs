//! Transparent capture for real (root only): two network namespaces joined by a veth pair,
//! the "pod" (A, 10.99.0.1) with Spar's rules and a stand-in proxy listening on 15001
//! (outbound), 15006 (inbound) and 15020 (an excluded inbound port), and a "remote" server
//! (B, 10.99.0.5:9080). Connections from users other than the proxy's must land on the
//! proxy with `original_dst` naming where they were going; the proxy's uid, excluded ports
//! and CIDRs must pass; the proxy calling its own pod's address is inbound again; the
//! application calling itself is left alone. IPv4 and IPv6.
//!
//! The listeners are this test binary run again inside the namespace (`child_listener`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use spar_capture::CaptureConfig;

const CHILD_ENV: &str = "SPAR_CAPTURE_CHILD";
const PROXY_UID: u32 = 1337;
const NOBODY: u32 = 65534;

/// Not a test by itself: with `SPAR_CAPTURE_CHILD="LABEL ADDR"` it listens on ADDR and
/// answers every connection with one line, `LABEL dst=<original destination>`.
#[test]
fn child_listener() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (label, addr) = spec.split_once(' ').unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        println!("LISTENING");
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let dst = match spar_capture::original_dst(&s) {
                Ok(a) => a.to_string(),
                Err(e) => format!("error:{e}"),
            };
            let _ = s.write_all(format!("{label} dst={dst}\n").as_bytes()).await;
        }
    });
}

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
        ("iptables", "--version"),
        ("iptables-restore", "--version"),
        ("ip6tables-restore", "--version"),
        ("setpriv", "--version"),
        ("bash", "--version"),
        ("timeout", "--version"),
    ] {
        if !ok(Command::new(tool).arg(arg)) {
            return Some(format!(
                "`{tool}` is missing (apt-get install iproute2 iptables util-linux)"
            ));
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

/// Two namespaces and their listeners; everything is removed on drop, also on failure.
struct Net {
    a: String,
    b: String,
    children: Vec<Child>,
}

impl Net {
    fn create() -> Net {
        let pid = std::process::id();
        let net = Net {
            a: format!("spar-cap-{pid}-a"),
            b: format!("spar-cap-{pid}-b"),
            children: Vec::new(),
        };
        let (va, vb) = (format!("sca{pid}"), format!("scb{pid}"));
        sh(&["ip", "netns", "add", &net.a]);
        sh(&["ip", "netns", "add", &net.b]);
        sh(&[
            "ip", "link", "add", &va, "netns", &net.a, "type", "veth", "peer", "name", &vb,
            "netns", &net.b,
        ]);
        for (ns, dev, v4, v6) in [
            (&net.a, &va, "10.99.0.1/24", "fd99::1/64"),
            (&net.b, &vb, "10.99.0.5/24", "fd99::5/64"),
        ] {
            sh(&["ip", "-n", ns, "addr", "add", v4, "dev", dev]);
            // nodad: usable at once, without waiting for duplicate address detection.
            sh(&["ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            if *ns == net.b {
                // A second remote address, for the excluded-CIDR check.
                sh(&["ip", "-n", ns, "addr", "add", "10.99.0.6/24", "dev", dev]);
            }
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        net
    }

    /// Starts a listener in `ns` and waits until it listens.
    fn listen(&mut self, ns: &str, label: &str, addr: &str) {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args([
                "--exact",
                "child_listener",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{label} {addr}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        self.children.push(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may print "test child_listener ... " on the same line first.
                if line.ends_with("LISTENING") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{label} did not start listening on {addr} in {ns}"));
    }

    /// Connects from `ns` as `uid` and returns the line the listener sent (empty if none).
    fn connect(&self, ns: &str, uid: u32, ip: &str, port: u16) -> String {
        let script = format!("exec 3<>/dev/tcp/{ip}/{port} && head -n1 <&3");
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "timeout", "10", "setpriv"])
            .args([
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".to_string(),
            ])
            .args(["bash", "-c", &script])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `iptables -t nat -S` and `ip6tables -t nat -S` in A.
    fn nat_rules(&self) -> String {
        let mut all = String::new();
        for tool in ["iptables", "ip6tables"] {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.a, tool, "-t", "nat", "-S"])
                .output()
                .unwrap();
            all.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        all
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting a namespace deletes its end of the veth pair, and with it the pair.
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn captured_connections_reach_the_proxy_with_their_original_destination() {
    if let Some(why) = missing() {
        assert!(
            std::env::var_os("SPAR_REQUIRE_PEERS").is_none(),
            "SPAR_REQUIRE_PEERS is set but {why}"
        );
        eprintln!("skipping the network-namespace capture test: {why}");
        return;
    }
    let mut net = Net::create();
    let cfg = CaptureConfig {
        proxy_uids: vec![PROXY_UID],
        proxy_gids: vec![PROXY_UID],
        ipv6: true,
        exclude_outbound_ports: vec![9443],
        exclude_outbound_cidrs: vec!["10.99.0.6/32".parse().unwrap()],
        ..CaptureConfig::default()
    };
    let (a, b) = (net.a.clone(), net.b.clone());
    spar_capture::apply(&cfg, Some(&a)).unwrap();
    // Applying again replaces rather than duplicates.
    spar_capture::apply(&cfg, Some(&a)).unwrap();
    let rules = net.nat_rules();
    assert_eq!(
        rules.matches("-A OUTPUT -p tcp -j ISTIO_OUTPUT").count(),
        2,
        "one per family: {rules}"
    );
    assert!(
        rules.contains("-A ISTIO_OUTPUT -s ::6/128 -o lo -j RETURN"),
        "{rules}"
    );

    // Dual-stack listeners, as a proxy binds them: IPv4 connections arrive v4-mapped.
    net.listen(&a, "OUTBOUND", "[::]:15001");
    net.listen(&a, "INBOUND", "[::]:15006");
    net.listen(&a, "DIRECT", "[::]:15020");
    net.listen(&b, "REMOTE", "[::]:9080");
    net.listen(&b, "REMOTE", "[::]:9443");

    // The application (not the proxy's uid) calling out: captured by 15001.
    assert_eq!(
        net.connect(&a, NOBODY, "10.99.0.5", 9080),
        "OUTBOUND dst=10.99.0.5:9080"
    );
    // The proxy itself calling out: not captured, reaches the remote server.
    let direct = net.connect(&a, PROXY_UID, "10.99.0.5", 9080);
    assert!(direct.starts_with("REMOTE "), "{direct:?}");
    // Someone calling into the pod: captured by 15006.
    assert_eq!(
        net.connect(&b, NOBODY, "10.99.0.1", 9080),
        "INBOUND dst=10.99.0.1:9080"
    );
    // An excluded inbound port is reached directly.
    let excluded = net.connect(&b, NOBODY, "10.99.0.1", 15020);
    assert!(excluded.starts_with("DIRECT "), "{excluded:?}");

    // Excluded outbound port and CIDR: not captured.
    let port = net.connect(&a, NOBODY, "10.99.0.5", 9443);
    assert!(port.starts_with("REMOTE "), "{port:?}");
    let cidr = net.connect(&a, NOBODY, "10.99.0.6", 9080);
    assert!(cidr.starts_with("REMOTE "), "{cidr:?}");
    // The proxy calling its own pod's address is inbound traffic for the pod: 15006.
    assert_eq!(
        net.connect(&a, PROXY_UID, "10.99.0.1", 9080),
        "INBOUND dst=10.99.0.1:9080"
    );
    // The application calling itself is left alone (nothing listens on 9080 here).
    assert_eq!(net.connect(&a, NOBODY, "10.99.0.1", 9080), "");

    // The same over IPv6 (ip6tables).
    assert_eq!(
        net.connect(&a, NOBODY, "fd99::5", 9080),
        "OUTBOUND dst=[fd99::5]:9080"
    );
    let direct = net.connect(&a, PROXY_UID, "fd99::5", 9080);
    assert!(direct.starts_with("REMOTE "), "{direct:?}");
    assert_eq!(
        net.connect(&b, NOBODY, "fd99::1", 9080),
        "INBOUND dst=[fd99::1]:9080"
    );

    spar_capture::clean(&cfg, Some(&a)).unwrap();
    let rules = net.nat_rules();
    assert!(!rules.contains("ISTIO"), "{rules}");
    // Without the rules the application reaches the remote server directly.
    for ip in ["10.99.0.5", "fd99::5"] {
        let after = net.connect(&a, NOBODY, ip, 9080);
        assert!(after.starts_with("REMOTE "), "{ip}: {after:?}");
    }
}
