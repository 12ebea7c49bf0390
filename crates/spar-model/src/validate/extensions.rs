//! Webhook rules for `WasmPlugin` and `TrafficExtension`.
//!
//! The schema checks the URL scheme, the sha256 pattern, name lengths, port ranges and
//! env `valueFrom`. Istio's webhook adds unique env names and, for TrafficExtension, a
//! byte limit on Lua code. Beyond Istio, a URL that names no module (no host, no file
//! path) and a `sha256` that contradicts the digest in the URL are errors: the proxy
//! could never load the module, whatever `failStrategy` says.

use std::collections::HashMap;

use super::peer_authentication::{check_selector, check_target_refs};
use super::Ctx;
use crate::diag::Diagnostic;
use crate::istio::types::{TrafficExtension, VmConfig, WasmPlugin};
use crate::FieldPath;

pub fn check_wasm(spec: &WasmPlugin, ctx: &Ctx) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let root = ctx.spec();
    check_selector(spec.selector.as_ref(), &root, &mut out);
    check_target_refs(spec.target_ref.as_ref(), &spec.target_refs, &root, &mut out);
    let module = Module {
        url: spec.url.as_deref(),
        sha256: spec.sha256.as_deref(),
        vm: spec.vm_config.as_ref(),
    };
    check_module(&module, &root, &mut out);
    out
}

pub fn check_traffic_extension(spec: &TrafficExtension, ctx: &Ctx) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let root = ctx.spec();
    check_selector(spec.selector.as_ref(), &root, &mut out);
    check_target_refs(None, &spec.target_refs, &root, &mut out);
    if let Some(wasm) = &spec.wasm {
        let module = Module {
            url: wasm.url.as_deref(),
            sha256: wasm.sha256.as_deref(),
            vm: wasm.vm_config.as_ref(),
        };
        check_module(&module, &root.field("wasm"), &mut out);
    }
    let code = spec
        .lua
        .as_ref()
        .and_then(|l| l.inline_code.as_deref())
        .unwrap_or("");
    // The schema counts characters; Istio counts bytes, which is what the proxy stores.
    if code.len() > LUA_MAX_BYTES {
        out.push(Diagnostic::error(
            root.field("lua").field("inlineCode"),
            format!(
                "Lua code is {} bytes; at most {LUA_MAX_BYTES} (64 KiB) are allowed, move the rest into \
                 a Wasm module or a smaller script",
                code.len()
            ),
        ));
    }
    out
}

const LUA_MAX_BYTES: usize = 65536;

/// The parts WasmPlugin and TrafficExtension's `wasm` have in common.
struct Module<'a> {
    url: Option<&'a str>,
    sha256: Option<&'a str>,
    vm: Option<&'a VmConfig>,
}

fn check_module(m: &Module, base: &FieldPath, out: &mut Vec<Diagnostic>) {
    if let Some(url) = m.url.filter(|u| !u.is_empty()) {
        if let Err(why) = check_url(url) {
            out.push(Diagnostic::error(
                base.field("url"),
                format!("url {url:?} {why}"),
            ));
        }
        let sha = m.sha256.unwrap_or("");
        if let Some(digest) = url_digest(url) {
            if !sha.is_empty() && !digest.eq_ignore_ascii_case(sha) {
                out.push(Diagnostic::error(
                    base.field("sha256"),
                    format!(
                        "sha256 {sha} contradicts the digest in url (sha256:{digest}), so the module \
                         never verifies; remove sha256 or make the two equal"
                    ),
                ));
            }
        }
    }
    if let Some(vm) = m.vm {
        let mut first: HashMap<&str, usize> = HashMap::new();
        let env = base.field("vmConfig").field("env");
        for (i, var) in vm.env.iter().enumerate() {
            let Some(name) = var.name.as_deref() else {
                continue;
            };
            if let Some(j) = first.get(name) {
                out.push(Diagnostic::error(
                    env.index(i).field("name"),
                    format!("Duplicate value: env {name:?} is already set at env[{j}]; give each variable once"),
                ));
            } else {
                first.insert(name, i);
            }
        }
    }
}

/// Why the module URL cannot name a module. The scheme is the schema's; a URL without one
/// is an OCI image reference.
fn check_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(());
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match scheme.to_ascii_lowercase().as_str() {
        "file" if path.len() <= 1 => {
            Err("names no file; write file:///absolute/path/to/plugin.wasm".into())
        }
        "file" => Ok(()),
        "http" | "https" | "oci" if authority.is_empty() => {
            Err(format!("has no host; write {scheme}://host/path"))
        }
        "oci" if path.trim_matches('/').is_empty() => {
            Err("names no image; write oci://registry/repository[:tag|@sha256:digest]".into())
        }
        _ => Ok(()),
    }
}

/// The digest of `...@sha256:<hex>` image references.
fn url_digest(url: &str) -> Option<&str> {
    let (_, digest) = url.rsplit_once("@sha256:")?;
    Some(digest)
}

#[cfg(test)]
#[path = "extensions_tests.rs"]
mod tests;
