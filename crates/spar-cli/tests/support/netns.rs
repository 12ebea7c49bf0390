//! Network namespaces as pods (root only): each test gets its own namespaces, processes and
//! hosts files, all removed on drop, also on failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The proxy's uid, as Istio runs it; `spar iptables` lets its traffic pass.
pub const PROXY_UID: &str = "1337";
/// An ordinary user for the applications' own calls (captured).
pub const APP_UID: &str = "65534";

fn ok(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why namespace tests cannot run here, if they cannot.
pub fn missing(tools: &[&str]) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        return Some(format!("needs root (euid {euid})"));
    }
    for tool in tools {
        let arg = match *tool {
            "ip" => "-V",
            "openssl" => "version",
            _ => "--version",
        };
        if !ok(Command::new(tool).arg(arg)) {
            return Some(format!("`{tool}` is missing"));
        }
    }
    None
}

/// Runs a command that must succeed.
pub fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces and the processes started in them.
pub struct Lab {
    namespaces: Vec<String>,
    children: Vec<Child>,
    pub dir: tempfile::TempDir,
    logs: Vec<PathBuf>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
    }
}

impl Lab {
    pub fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        // Processes running as the proxy's or the app's uid read and write here.
        sh(&["chmod", "0777", &dir.path().to_string_lossy()]);
        Lab {
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
            logs: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A new namespace with loopback up.
    pub fn netns(&mut self, name: &str) {
        sh(&["ip", "netns", "add", name]);
        self.namespaces.push(name.to_string());
        sh(&["ip", "-n", name, "link", "set", "lo", "up"]);
    }

    /// Gives `ns` the address `cidr` on a veth whose other end joins bridge `br` in `hub`,
    /// and a default route out of it (connect() to a ClusterIP needs a route to reach
    /// iptables, as in a pod).
    pub fn attach(&mut self, ns: &str, hub: &str, br: &str, cidr: &str, tag: &str) {
        let (inner, outer) = (format!("e{tag}"), format!("h{tag}"));
        sh(&[
            "ip", "link", "add", &inner, "netns", ns, "type", "veth", "peer", "name", &outer,
            "netns", hub,
        ]);
        sh(&["ip", "-n", ns, "addr", "add", cidr, "dev", &inner]);
        sh(&["ip", "-n", ns, "link", "set", &inner, "up"]);
        sh(&["ip", "-n", hub, "link", "set", &outer, "master", br]);
        sh(&["ip", "-n", hub, "link", "set", &outer, "up"]);
        sh(&["ip", "-n", ns, "route", "add", "default", "dev", &inner]);
    }

    /// A bridge in `hub` with `cidr` on it.
    pub fn bridge(&mut self, hub: &str, br: &str, cidr: &str) {
        sh(&["ip", "-n", hub, "link", "add", br, "type", "bridge"]);
        sh(&["ip", "-n", hub, "addr", "add", cidr, "dev", br]);
        sh(&["ip", "-n", hub, "link", "set", br, "up"]);
    }

    /// `ns`'s /etc/hosts (`ip netns exec` mounts it over /etc/hosts).
    pub fn hosts(&self, ns: &str, text: &str) {
        std::fs::create_dir_all(format!("/etc/netns/{ns}")).unwrap();
        std::fs::write(format!("/etc/netns/{ns}/hosts"), text).unwrap();
    }

    /// Starts `args` in `ns`, as `uid` if given; stderr goes to `log` in the lab directory.
    pub fn spawn(&mut self, ns: &str, uid: Option<&str>, args: &[&str], log: &str) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]);
        if let Some(uid) = uid {
            cmd.args([
                "setpriv",
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
            ]);
        }
        let path = self.dir.path().join(log);
        let file = std::fs::File::create(&path).unwrap();
        let child = cmd
            .args(args)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        self.logs.push(path);
        self.children.push(child);
    }

    /// curl in `ns` as `uid`: (status code, body).
    pub fn curl(&self, ns: &str, uid: &str, args: &[&str]) -> (String, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "setpriv"])
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

    /// The last lines of every log, for failure messages.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for f in &self.logs {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            all.push_str(&format!("--- {}\n", f.display()));
            for l in tail.into_iter().rev() {
                all.push_str(l);
                all.push('\n');
            }
        }
        all
    }
}
