//! `spar ctl diff --config-dir DIR --new NEWDIR [--node-id ID]...`: what applying NEWDIR
//! would change, per proxy, before you apply it. Offline: both directories are loaded and
//! translated with the same code the control plane runs; nothing connects anywhere.
//!
//! Proxies: the `--node-id`s given (a sidecar's labels are taken from the workload at its IP
//! or with its pod name, in either config), else one sidecar per workload of either config
//! and one gateway per distinct `Gateway` selector. Resources are compared by the hash of
//! their encoded bytes; a changed one is shown as a diff of its summary lines. Exit code 0
//! when nothing changes, 1 when something does (like `diff`), 2 when it could not run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use spar_model::{ConfigSet, Kind, LoadOptions};
use spar_registry::Registry;
use spar_translate::{summary, translate, ProxyKind, ProxyNode, XdsResources};

use super::line_diff::unified;

/// What applying a new config directory would change for each proxy.
#[derive(clap::Args)]
pub struct Args {
    /// The config in force.
    #[arg(long)]
    pub config_dir: PathBuf,

    /// The config you mean to apply.
    #[arg(long = "new")]
    pub new_dir: PathBuf,

    /// Only these proxies (Istio node ids); repeatable. Default: one sidecar per workload
    /// and one gateway per Gateway selector.
    #[arg(long = "node-id")]
    pub node_ids: Vec<String>,

    /// Namespace for resources that do not set `metadata.namespace`.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

pub(crate) struct Side {
    pub(crate) config: ConfigSet,
    pub(crate) registry: Registry,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let old = load(&args.config_dir, &args.namespace)?;
    let new = load(&args.new_dir, &args.namespace)?;
    let proxies = if args.node_ids.is_empty() {
        default_proxies(&[&old, &new])
    } else {
        args.node_ids
            .iter()
            .map(|id| given_proxy(id, &[&old, &new]))
            .collect::<anyhow::Result<_>>()?
    };
    let mut out = String::new();
    let mut changed = 0usize;
    for node in &proxies {
        let a = translate(&old.config, &old.registry, node);
        let b = translate(&new.config, &new.registry, node);
        let text = diff_proxy(&a, &b);
        if !text.is_empty() {
            changed += 1;
            let _ = writeln!(out, "{}:", node.id);
            out.push_str(&text);
        }
    }
    let _ = writeln!(out, "{changed} of {} proxies would change", proxies.len());
    print!("{out}");
    Ok(if changed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(crate) fn load(dir: &PathBuf, namespace: &str) -> anyhow::Result<Side> {
    let sources = spar_config::read_sources(std::slice::from_ref(dir))
        .with_context(|| format!("reading {}", dir.display()))?;
    let config = ConfigSet::load(
        sources.iter().map(|s| (s.name.as_str(), s.text.as_str())),
        &LoadOptions {
            default_namespace: namespace.to_string(),
            ..LoadOptions::default()
        },
    );
    // Invalid resources are left out, as the control plane leaves them out; say so.
    let errors = config
        .diagnostics()
        .iter()
        .filter(|d| d.severity == spar_model::Severity::Error)
        .count();
    if errors > 0 {
        eprintln!(
            "spar: {}: {errors} invalid resource error(s), left out (see `spar validate`)",
            dir.display()
        );
    }
    let registry = Registry::build(&config);
    Ok(Side { config, registry })
}

/// One sidecar per workload (distinct namespace and labels) and one gateway per distinct
/// Gateway selector, across both configs, in a stable order.
fn default_proxies(sides: &[&Side]) -> Vec<ProxyNode> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for side in sides {
        for w in side.registry.workloads() {
            if !w.has_sidecar
                || !seen.insert((ProxyKind::Sidecar, w.namespace.clone(), w.labels.clone()))
            {
                continue;
            }
            let ip = w.address.clone().unwrap_or_else(|| "0.0.0.0".to_string());
            out.push(node(
                ProxyKind::Sidecar,
                &ip,
                &w.name,
                &w.namespace,
                &w.labels,
            ));
        }
    }
    for side in sides {
        for r in side.config.of_kind(Kind::Gateway) {
            let Some(gw) = r.body.gateway() else { continue };
            let selector: BTreeMap<String, String> = gw.selector.clone().into_iter().collect();
            // The gateway runs where a workload with those labels runs, else next to the Gateway.
            let pod = sides.iter().find_map(|s| {
                s.registry
                    .workloads()
                    .iter()
                    .find(|w| selector.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
            });
            let (name, ns) = match pod {
                Some(w) => (w.name.clone(), w.namespace.clone()),
                None => (format!("gateway-{}", r.meta.name), r.meta.namespace.clone()),
            };
            if !seen.insert((ProxyKind::Router, ns.clone(), selector.clone())) {
                continue;
            }
            out.push(node(ProxyKind::Router, "0.0.0.0", &name, &ns, &selector));
        }
    }
    out
}

fn node(
    kind: ProxyKind,
    ip: &str,
    name: &str,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> ProxyNode {
    let role = match kind {
        ProxyKind::Sidecar => "sidecar",
        ProxyKind::Router => "router",
    };
    let id = format!("{role}~{ip}~{name}.{ns}~{ns}.svc.cluster.local");
    ProxyNode {
        labels: labels.clone(),
        ..ProxyNode::parse_id(&id).unwrap_or_else(|_| ProxyNode {
            id: id.clone(),
            kind,
            ip: ip.to_string(),
            name: name.to_string(),
            namespace: ns.to_string(),
            labels: BTreeMap::new(),
            service_account: "default".to_string(),
            workload_name: name.to_string(),
            cluster_id: "Kubernetes".to_string(),
            mesh_id: "cluster.local".to_string(),
            locality: String::new(),
        })
    }
}

/// A node id from the command line, with labels from the workload at its IP or with its
/// pod name (a node id carries no labels; Envoy sends them as metadata).
pub(crate) fn given_proxy(id: &str, sides: &[&Side]) -> anyhow::Result<ProxyNode> {
    let mut n = ProxyNode::parse_id(id).with_context(|| format!("--node-id {id}"))?;
    let found = sides.iter().find_map(|s| {
        s.registry.workloads().iter().find(|w| {
            w.namespace == n.namespace
                && (w.address.as_deref() == Some(n.ip.as_str()) || w.name == n.name)
        })
    });
    if let Some(w) = found {
        n.labels = w.labels.clone();
    }
    Ok(n)
}

/// Per type: added (`+ name`), removed (`- name`), changed (`~ name` and the diff of its
/// summary lines). Empty when nothing differs.
fn diff_proxy(a: &XdsResources, b: &XdsResources) -> String {
    let mut out = String::new();
    for ((ty, old), (_, new)) in by_type(a).into_iter().zip(by_type(b)) {
        let mut section = String::new();
        for name in old.keys().chain(new.keys()).collect::<BTreeSet<_>>() {
            match (old.get(name), new.get(name)) {
                (None, Some(_)) => {
                    let _ = writeln!(section, "    + {name}");
                }
                (Some(_), None) => {
                    let _ = writeln!(section, "    - {name}");
                }
                (Some((da, la)), Some((db, lb))) if da != db => {
                    let _ = writeln!(section, "    ~ {name}");
                    let _ = writeln!(section, "      --- old\n      +++ new");
                    for l in unified(la, lb) {
                        let _ = writeln!(section, "      {l}");
                    }
                }
                _ => {}
            }
        }
        if !section.is_empty() {
            let _ = writeln!(out, "  {ty}:");
            out.push_str(&section);
        }
    }
    out
}

/// Each resource as (digest of its bytes, its summary lines), by name, per type.
type Resources = BTreeMap<String, (String, Vec<String>)>;

fn by_type(x: &XdsResources) -> [(&'static str, Resources); 5] {
    fn each<T: prost::Message + Clone>(
        items: &[T],
        name: impl Fn(&T) -> &str,
        one: impl Fn(T) -> XdsResources,
    ) -> Resources {
        items
            .iter()
            .map(|m| {
                let lines = summary::render(&one(m.clone()))
                    .lines()
                    // Section headers are the only unindented lines of a summary.
                    .filter(|l| l.starts_with(' '))
                    .map(str::to_string)
                    .collect();
                (name(m).to_string(), (summary::digest(m), lines))
            })
            .collect()
    }
    [
        (
            "listeners",
            each(
                &x.listeners,
                |m| &m.name,
                |m| XdsResources {
                    listeners: vec![m],
                    ..Default::default()
                },
            ),
        ),
        (
            "routes",
            each(
                &x.routes,
                |m| &m.name,
                |m| XdsResources {
                    routes: vec![m],
                    ..Default::default()
                },
            ),
        ),
        (
            "clusters",
            each(
                &x.clusters,
                |m| &m.name,
                |m| XdsResources {
                    clusters: vec![m],
                    ..Default::default()
                },
            ),
        ),
        (
            "endpoints",
            each(
                &x.endpoints,
                |m| &m.cluster_name,
                |m| XdsResources {
                    endpoints: vec![m],
                    ..Default::default()
                },
            ),
        ),
        (
            "secrets",
            each(
                &x.secrets,
                |m| &m.name,
                |m| XdsResources {
                    secrets: vec![m],
                    ..Default::default()
                },
            ),
        ),
    ]
}
