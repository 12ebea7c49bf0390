//! `spar ctl proxy-config <proxy> <type>`: the resources a connected proxy was actually
//! sent, read from the control plane's `/debug/config_dump?proxyID=..&type=..`.
//!
//! The default output is the translation summary (`spar_translate::summary`'s lines, under
//! one header per type). `-o json` prints a JSON array, one object per resource: `name`,
//! `type_url`, `version` (hash of its bytes), `summary` (its lines), `resource` (protobuf
//! debug text) and `base64` (the encoded protobuf; empty for secrets, which hold keys).
//! `-o yaml` prints the same list as YAML.
//! envoy-types has no proto-JSON mapping, so the bytes are the exact form.

use std::process::ExitCode;

use anyhow::{bail, Context};
use serde::Deserialize;

use super::ctl::http_get;

/// What a connected proxy was sent, by type.
#[derive(clap::Args)]
pub struct Args {
    /// The proxy: its node id, or `<pod>.<namespace>` (the id's third part).
    pub proxy: String,

    /// Which resources.
    #[arg(value_parser = ["listeners", "routes", "clusters", "endpoints", "secrets", "all"])]
    pub kind: String,

    /// The control plane's monitoring address.
    #[arg(long, default_value = "127.0.0.1:15014")]
    pub cp: String,

    /// `summary` (readable, one line per resource or rule), `json` or `yaml`.
    #[arg(short = 'o', long, value_parser = ["summary", "json", "yaml"], default_value = "summary")]
    pub output: String,
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

#[derive(Deserialize)]
struct Proxy {
    proxy: String,
}

/// Types in the order the summary prints them, with the short names the dump uses.
const ORDER: [(&str, &str); 5] = [
    ("listeners", "lds"),
    ("routes", "rds"),
    ("clusters", "cds"),
    ("endpoints", "eds"),
    ("secrets", "sds"),
];

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let id = resolve(&args.cp, &args.proxy)?;
    let mut path = format!("/debug/config_dump?proxyID={}", percent_encode(&id));
    if args.kind != "all" {
        path.push_str(&format!("&type={}", args.kind));
    }
    let dump: Dump = serde_json::from_str(&http_get(&args.cp, &path)?)
        .context("reading /debug/config_dump (is --cp a Spar control plane?)")?;
    // A proxy that reconnected may briefly have two connections; the newest is what it runs.
    let Some(conn) = dump.connections.into_iter().max_by_key(|c| c.connection) else {
        bail!("{id}: no connection");
    };
    let selected: Vec<(&str, Vec<serde_json::Value>)> = ORDER
        .iter()
        .filter(|(short, _)| args.kind == "all" || args.kind == *short)
        .map(|(short, url)| {
            (
                *short,
                conn.resources.get(*url).cloned().unwrap_or_default(),
            )
        })
        .collect();
    if args.output != "summary" {
        let mut all: Vec<serde_json::Value> = selected.into_iter().flat_map(|(_, r)| r).collect();
        for r in &mut all {
            let certs = super::cert_check::secret_certificates(r);
            if !certs.is_empty() {
                let described: Vec<serde_json::Value> = certs
                    .into_iter()
                    .map(|(role, c)| serde_json::json!({"role": role, "certificate": c}))
                    .collect();
                r["certificates"] = described.into();
            }
        }
        if args.output == "yaml" {
            print!(
                "{}",
                serde_saphyr::to_string(&all).context("writing the resources as YAML")?
            );
        } else {
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    for (short, resources) in selected {
        out.push_str(short);
        out.push_str(":\n");
        for r in resources {
            for line in r["summary"].as_array().into_iter().flatten() {
                out.push_str(line.as_str().unwrap_or_default());
                out.push('\n');
            }
            // Secrets: each certificate's serial, identity, validity (roots: fingerprint).
            out.push_str(&super::cert_check::describe_lines(
                &super::cert_check::secret_certificates(&r),
            ));
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// The full node id for `proxy`: itself when connected under that id, else the one
/// connected proxy whose `<pod>.<namespace>` part it is.
pub(crate) fn resolve(cp: &str, proxy: &str) -> anyhow::Result<String> {
    let proxies: Vec<Proxy> = serde_json::from_str(&http_get(cp, "/debug/syncz")?)
        .context("reading /debug/syncz (is --cp a Spar control plane?)")?;
    if proxies.iter().any(|p| p.proxy == proxy) {
        return Ok(proxy.to_string());
    }
    let mut found: Vec<&str> = proxies
        .iter()
        .map(|p| p.proxy.as_str())
        .filter(|id| id.split('~').nth(2) == Some(proxy))
        .collect();
    found.sort_unstable();
    found.dedup();
    match found.as_slice() {
        [one] => Ok((*one).to_string()),
        [] => bail!("no connected proxy {proxy:?} (see `spar ctl proxy-status`)"),
        many => bail!("{proxy:?} is ambiguous: {}", many.join(", ")),
    }
}

/// Node ids hold `~` and `.`, which are safe; anything else outside the unreserved set is
/// escaped so the query survives.
pub(crate) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
