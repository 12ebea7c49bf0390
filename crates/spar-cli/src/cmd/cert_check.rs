//! Certificates as `spar ctl` shows them: `proxy-config <proxy> secrets` describes each
//! certificate a proxy was sent (serial, SPIFFE ID, validity, root fingerprint), and
//! `spar ctl cert-check` lists, over every connected proxy, the certificates that expire
//! within a window (or already have), exiting 1 when there is any.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Deserialize;
use spar_ca::describe::{describe_pem, CertInfo};

use super::ctl::http_get;
use super::proxy_config::percent_encode;

/// Lists certificates nearing expiry across all connected proxies.
#[derive(clap::Args)]
pub struct Args {
    /// Flag certificates that expire within this window (`90m`, `12h`, `7d`).
    #[arg(long, default_value = "24h", value_parser = parse_window)]
    pub within: Duration,

    /// The control plane's monitoring address.
    #[arg(long, default_value = "127.0.0.1:15014")]
    pub cp: String,
}

fn parse_window(text: &str) -> Result<Duration, String> {
    let (num, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?}: want a number and a unit, e.g. 90m, 12h, 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" | "" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{text:?}: unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

/// The certificates of one secret as `/debug/config_dump` gives its public parts: the
/// chain (leaf first) and the trusted CA bundle, each with what role it plays.
pub fn secret_certificates(resource: &serde_json::Value) -> Vec<(&'static str, CertInfo)> {
    let public = &resource["public"];
    let mut out = Vec::new();
    for (field, first, rest) in [
        ("cert_chain", "cert", "chain"),
        ("trusted_ca", "root", "root"),
    ] {
        let pem = public[field].as_str().unwrap_or_default();
        if pem.is_empty() {
            continue;
        }
        if let Ok(certs) = describe_pem(pem.as_bytes()) {
            for (i, c) in certs.into_iter().enumerate() {
                out.push((if i == 0 { first } else { rest }, c));
            }
        }
    }
    out
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `2026-11-22T21:00:00Z`.
fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// `23h59m`, `6d2h`, `45s`; negative spans say `ago`.
fn span(secs: i64) -> String {
    let s = secs.unsigned_abs();
    let text = match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    };
    if secs < 0 {
        format!("{text} ago")
    } else {
        text
    }
}

/// The summary lines `proxy-config <proxy> secrets` prints under a secret.
pub fn describe_lines(certs: &[(&'static str, CertInfo)]) -> String {
    let now = now();
    let mut out = String::new();
    for (role, c) in certs {
        let who = c
            .spiffe_id()
            .map(str::to_string)
            .unwrap_or_else(|| c.subject.clone());
        let _ = write!(
            out,
            "    {role:<5} {who}  serial={}  valid {} .. {}",
            c.serial,
            rfc3339(c.not_before),
            rfc3339(c.not_after)
        );
        let left = c.not_after - now;
        if left < 0 {
            let _ = write!(out, "  (EXPIRED {})", span(left));
        } else {
            let _ = write!(out, "  (expires in {})", span(left));
        }
        if *role == "root" {
            let _ = write!(out, "  sha256={}", c.sha256);
        }
        out.push('\n');
    }
    out
}

#[derive(Deserialize)]
struct Proxy {
    proxy: String,
}

#[derive(Deserialize)]
struct Dump {
    connections: Vec<Connection>,
}

#[derive(Deserialize)]
struct Connection {
    connection: u64,
    resources: std::collections::BTreeMap<String, Vec<serde_json::Value>>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let proxies: Vec<Proxy> = serde_json::from_str(&http_get(&args.cp, "/debug/syncz")?)
        .context("reading /debug/syncz (is --cp a Spar control plane?)")?;
    let mut ids: Vec<String> = proxies.into_iter().map(|p| p.proxy).collect();
    ids.sort();
    ids.dedup();
    let window = i64::try_from(args.within.as_secs()).unwrap_or(i64::MAX);
    let now = now();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<44} {:<8} {:<46} {:<21} LEFT",
        "STATUS", "PROXY", "SECRET", "CERTIFICATE", "NOT AFTER"
    );
    let (mut flagged, mut seen) = (0usize, 0usize);
    for id in &ids {
        let path = format!(
            "/debug/config_dump?proxyID={}&type=secrets",
            percent_encode(id)
        );
        let dump: Dump = serde_json::from_str(&http_get(&args.cp, &path)?)
            .with_context(|| format!("reading the secrets sent to {id}"))?;
        let Some(conn) = dump.connections.into_iter().max_by_key(|c| c.connection) else {
            continue;
        };
        for secret in conn.resources.values().flatten() {
            let name = secret["name"].as_str().unwrap_or_default();
            for (_, c) in secret_certificates(secret) {
                seen += 1;
                let left = c.not_after - now;
                let status = if c.not_before > now {
                    "NOT YET"
                } else if left < 0 {
                    "EXPIRED"
                } else if left < window {
                    "EXPIRING"
                } else {
                    "OK"
                };
                if status != "OK" {
                    flagged += 1;
                }
                let who = c
                    .spiffe_id()
                    .map(str::to_string)
                    .unwrap_or_else(|| c.subject.clone());
                let _ = writeln!(
                    out,
                    "{status:<10} {id:<44} {name:<8} {who:<46} {:<21} {}",
                    rfc3339(c.not_after),
                    span(left)
                );
            }
        }
    }
    print!("{out}");
    println!(
        "{seen} certificate(s) sent to {} proxies; {flagged} expire within {} or are not valid now",
        ids.len(),
        span(window)
    );
    Ok(if flagged > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_spans_read_as_operators_write_them() {
        assert_eq!(parse_window("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_window("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_window("2"), Ok(Duration::from_secs(7200)));
        assert!(parse_window("2w").is_err());
        assert_eq!(span(86_340), "23h59m");
        assert_eq!(span(-30), "30s ago");
        assert_eq!(span(3 * 86_400 + 7200), "3d2h");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
