//! The admin `/certs` endpoint, in Envoy's shape: every secret the proxy holds (its own
//! identity, which wins, then what SDS sent) with the certificates of its chain and its
//! trust bundle: serial, SANs, validity and days until expiration. No key material.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use spar_ca::describe::{describe_pem, CertInfo};

use crate::config::Snapshot;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn cert(path: &str, c: &CertInfo, now: i64) -> Value {
    let sans: Vec<Value> = c
        .uris
        .iter()
        .map(|u| json!({ "uri": u }))
        .chain(c.dns.iter().map(|d| json!({ "dns": d })))
        .collect();
    json!({
        "path": path,
        "serial_number": c.serial,
        "subject": c.subject,
        "subject_alt_names": sans,
        "days_until_expiration": ((c.not_after - now) / 86_400).to_string(),
        "valid_from": c.not_before,
        "expiration_time": c.not_after,
        "sha256": c.sha256,
    })
}

fn certs(pem: &[u8], path: &str, now: i64) -> Vec<Value> {
    describe_pem(pem)
        .map(|cs| cs.iter().map(|c| cert(path, c, now)).collect())
        .unwrap_or_default()
}

/// `{"certificates": [{"name", "source", "cert_chain": [...], "ca_cert": [...]}]}`; times
/// are Unix seconds.
pub fn certs_json(snap: &Snapshot) -> Value {
    let now = unix_now();
    let local = snap.local_secrets.iter().map(|(n, s)| (n, s, "local"));
    let sds = snap
        .secrets
        .iter()
        .filter(|(n, _)| !snap.local_secrets.contains_key(*n))
        .map(|(n, s)| (n, s, "sds"));
    let list: Vec<Value> = local
        .chain(sds)
        .map(|(name, s, source)| {
            let path = format!("<inline:{name}>");
            json!({
                "name": name,
                "source": source,
                "cert_chain": s.cert.as_ref().map(|c| certs(&c.chain, &path, now)).unwrap_or_default(),
                "ca_cert": s.validation.as_ref().map(|v| certs(&v.trusted_ca, &path, now)).unwrap_or_default(),
            })
        })
        .collect();
    json!({ "certificates": list })
}
