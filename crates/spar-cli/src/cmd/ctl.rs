//! `spar ctl`: operating a running control plane.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

/// Inspect a running `spar control-plane`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand)]
pub enum Command {
    ProxyStatus(ProxyStatusArgs),
    ProxyConfig(super::proxy_config::Args),
    Diff(super::diff::Args),
    Explain(super::explain::Args),
    TlsCheck(super::tls_check::Args),
    CertCheck(super::cert_check::Args),
}

/// Each connected proxy, type by type: SYNCED (accepted what was last sent), STALE (sent,
/// not yet acknowledged) or NACKED (rejected; it runs its last accepted version), with the
/// version sent; then every config file whose latest version is invalid, with its errors
/// (its last good version stays in force). Reads `/debug/syncz` and `/debug/configz`.
#[derive(clap::Args)]
pub struct ProxyStatusArgs {
    /// The control plane's monitoring address.
    #[arg(long, default_value = "127.0.0.1:15014")]
    pub cp: String,

    /// Print the raw status JSON instead of the table.
    #[arg(short = 'o', long, value_parser = ["table", "json"], default_value = "table")]
    pub output: String,
}

#[derive(Deserialize)]
struct Proxy {
    proxy: String,
    protocol: String,
    types: std::collections::BTreeMap<String, TypeStatus>,
}

#[derive(Deserialize)]
struct TypeStatus {
    state: String,
    sent_version: String,
    last_nack: Option<String>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        Command::ProxyStatus(a) => proxy_status(a),
        Command::ProxyConfig(a) => super::proxy_config::run(a),
        Command::Diff(a) => super::diff::run(a),
        Command::Explain(a) => super::explain::run(a),
        Command::TlsCheck(a) => super::tls_check::run(a),
        Command::CertCheck(a) => super::cert_check::run(a),
    }
}

fn proxy_status(args: &ProxyStatusArgs) -> anyhow::Result<ExitCode> {
    let body = http_get(&args.cp, "/debug/syncz")?;
    if args.output == "json" {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let proxies: Vec<Proxy> = serde_json::from_str(&body)
        .context("reading /debug/syncz (is --cp a Spar control plane?)")?;
    let configz: Configz = serde_json::from_str(&http_get(&args.cp, "/debug/configz")?)
        .context("reading /debug/configz (is --cp a Spar control plane?)")?;
    print!("{}{}", table(&proxies), config_errors(&configz));
    Ok(ExitCode::SUCCESS)
}

#[derive(Deserialize, Default)]
struct Configz {
    bad_files: std::collections::BTreeMap<String, Vec<String>>,
}

/// One `CONFIG` line per invalid file, then its diagnostics indented.
fn config_errors(c: &Configz) -> String {
    let mut out = String::new();
    for (file, diags) in &c.bad_files {
        out.push_str(&format!(
            "CONFIG {file}: invalid, its last good version (if any) stays in force\n"
        ));
        for d in diags {
            out.push_str(&format!("  {d}\n"));
        }
    }
    out
}

fn table(proxies: &[Proxy]) -> String {
    let mut rows = vec![["NAME", "XDS", "CDS", "LDS", "EDS", "RDS"].map(String::from)];
    let mut nacks = Vec::new();
    for p in proxies {
        let cell = |t: &str| match p.types.get(t) {
            None => "NOT SENT".to_string(),
            Some(s) => format!("{} ({})", s.state, s.sent_version),
        };
        rows.push([
            p.proxy.clone(),
            p.protocol.to_uppercase(),
            cell("cds"),
            cell("lds"),
            cell("eds"),
            cell("rds"),
        ]);
        for (t, s) in &p.types {
            if let (Some(err), "NACKED") = (&s.last_nack, s.state.as_str()) {
                // Envoy's messages span lines; one line per NACK keeps the output greppable.
                let err = err.split_whitespace().collect::<Vec<_>>().join(" ");
                nacks.push(format!("{} {}: {}", p.proxy, t.to_uppercase(), err));
            }
        }
    }
    let mut widths = [0usize; 6];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for n in nacks {
        out.push_str(&format!("NACK {n}\n"));
    }
    out
}

/// A plain HTTP/1.1 GET; the monitoring port is local and speaks HTTP/1 only.
pub(crate) fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    let hint = || {
        format!(
            "connecting to the control plane at {addr} (is `spar control-plane` running? see --cp)"
        )
    };
    let mut s = TcpStream::connect(addr).with_context(hint)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("{addr}{path}: not an HTTP response");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{addr}{path}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_state_version_and_nack_errors() {
        let proxies: Vec<Proxy> = serde_json::from_str(
            r#"[{"proxy":"sidecar~1~a.ns~ns.svc.cluster.local","protocol":"sotw","types":{
                "cds":{"state":"NACKED","sent_version":"3","last_nack":"bad cluster"},
                "lds":{"state":"SYNCED","sent_version":"3","last_nack":null}}}]"#,
        )
        .unwrap_or_default();
        let t = table(&proxies);
        assert!(t.starts_with("NAME"), "{t}");
        assert!(t.contains("NACKED (3)  SYNCED (3)  NOT SENT"), "{t}");
        assert!(
            t.contains("NACK sidecar~1~a.ns~ns.svc.cluster.local CDS: bad cluster"),
            "{t}"
        );
    }

    #[test]
    fn invalid_files_are_listed_with_their_errors() {
        let c: Configz =
            serde_json::from_str(r#"{"bad_files":{"vs.yaml":["vs.yaml:3: boom"]}}"#).unwrap();
        assert_eq!(
            config_errors(&c),
            "CONFIG vs.yaml: invalid, its last good version (if any) stays in force\n  vs.yaml:3: boom\n"
        );
        assert_eq!(config_errors(&Configz::default()), "");
    }
}
