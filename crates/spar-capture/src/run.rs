//! Installing and removing the rules: `iptables-restore --noflush` with the rule text on
//! stdin, and `iptables -t nat -D/-F/-X` to take them out, optionally inside a network
//! namespace through `ip netns exec`. Installing first removes any earlier Spar rules, so
//! running it twice leaves one copy.

use std::io::{self, Write};
use std::process::{Command, Output, Stdio};

use crate::rules::{restore_text, CaptureConfig, Family, CHAINS};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot run `{command}`: {source} (is it installed? on Debian or Ubuntu: apt-get install iptables iproute2)")]
    Spawn { command: String, source: io::Error },
    #[error("`{command}` failed ({status}): {stderr} (capture needs root or CAP_NET_ADMIN; with --netns, does the namespace exist?)")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
}

fn tools(family: Family) -> (&'static str, &'static str) {
    match family {
        Family::V4 => ("iptables", "iptables-restore"),
        Family::V6 => ("ip6tables", "ip6tables-restore"),
    }
}

fn families(cfg: &CaptureConfig) -> Vec<Family> {
    if cfg.ipv6 {
        vec![Family::V4, Family::V6]
    } else {
        vec![Family::V4]
    }
}

fn command(netns: Option<&str>, program: &str, args: &[&str]) -> (Command, String) {
    let mut argv: Vec<&str> = Vec::new();
    if let Some(ns) = netns {
        argv.extend(["ip", "netns", "exec", ns]);
    }
    argv.push(program);
    argv.extend(args);
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    (cmd, argv.join(" "))
}

fn run(
    netns: Option<&str>,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<Output, CaptureError> {
    let (mut cmd, shown) = command(netns, program, args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let spawn_err = |source| CaptureError::Spawn {
        command: shown.clone(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(spawn_err)?;
    }
    child.wait_with_output().map_err(spawn_err)
}

fn check(
    netns: Option<&str>,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<(), CaptureError> {
    let out = run(netns, program, args, stdin)?;
    if out.status.success() {
        return Ok(());
    }
    Err(CaptureError::Failed {
        command: command(netns, program, args).1,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Installs the capture rules (replacing earlier Spar rules), in `netns` if given.
pub fn apply(cfg: &CaptureConfig, netns: Option<&str>) -> Result<(), CaptureError> {
    clean(cfg, netns)?;
    for family in families(cfg) {
        let (_, restore) = tools(family);
        check(
            netns,
            restore,
            &["--noflush"],
            Some(&restore_text(cfg, family)),
        )?;
    }
    Ok(())
}

/// Removes Spar's chains and the jumps to them. Rules that are not there are no error; a
/// missing `iptables` or namespace is.
pub fn clean(cfg: &CaptureConfig, netns: Option<&str>) -> Result<(), CaptureError> {
    for family in families(cfg) {
        let (iptables, _) = tools(family);
        // Fails fast if the tool or the namespace is missing.
        check(netns, iptables, &["-t", "nat", "-S", "OUTPUT"], None)?;
        for (chain, target) in [("PREROUTING", "ISTIO_INBOUND"), ("OUTPUT", "ISTIO_OUTPUT")] {
            // Delete every copy (bounded, in case something keeps re-adding it).
            for _ in 0..16 {
                let del = ["-t", "nat", "-D", chain, "-p", "tcp", "-j", target];
                if !run(netns, iptables, &del, None)?.status.success() {
                    break;
                }
            }
        }
        for flag in ["-F", "-X"] {
            for c in CHAINS {
                run(netns, iptables, &["-t", "nat", flag, c], None)?;
            }
        }
    }
    Ok(())
}
