//! `spar bootstrap envoy`: an Envoy bootstrap that points a real Envoy at Spar.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::json;

/// Print Envoy bootstraps.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand)]
pub enum Command {
    Envoy(EnvoyArgs),
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Role {
    Sidecar,
    Gateway,
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum AdsApi {
    /// State of the world (`GRPC`).
    Sotw,
    /// Incremental (`DELTA_GRPC`).
    Delta,
}

/// Print (JSON) an Envoy bootstrap whose only static cluster is `xds-grpc`, the control plane;
/// listeners and clusters come over ADS. The node id and metadata follow Istio's agent, so
/// the control plane sees the same identity istiod would.
///
/// `--node-id` takes Istio's form (`sidecar~10.1.2.3~reviews-v1-abc.default~default.svc.cluster.local`)
/// or just `<pod>.<namespace>`, completed with `--role` and `--ip`.
#[derive(clap::Args)]
pub struct EnvoyArgs {
    #[arg(long)]
    pub node_id: String,

    #[arg(long, value_enum, default_value_t = Role::Sidecar)]
    pub role: Role,

    /// The workload's IP, when --node-id is the short form.
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: String,

    /// The control plane's xDS address.
    #[arg(long, default_value = "127.0.0.1:15010")]
    pub xds_addr: String,

    /// Envoy's admin port on 127.0.0.1 (0: any free port; see Envoy's --admin-address-path).
    #[arg(long, default_value_t = 15000)]
    pub admin_port: u16,

    /// Workload labels (LABELS metadata), `key=value`, repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,

    #[arg(long, default_value = "default")]
    pub service_account: String,

    #[arg(long, default_value = "Kubernetes")]
    pub cluster_id: String,

    #[arg(long, default_value = "cluster.local")]
    pub mesh_id: String,

    #[arg(long, value_enum, default_value_t = AdsApi::Sotw)]
    pub ads: AdsApi,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        Command::Envoy(a) => {
            let b = envoy(a)?;
            println!("{}", serde_json::to_string_pretty(&b)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn node_id(args: &EnvoyArgs) -> anyhow::Result<String> {
    let want = match args.role {
        Role::Sidecar => "sidecar",
        Role::Gateway => "router",
    };
    if args.node_id.contains('~') {
        let kind = args.node_id.split('~').next().unwrap_or("");
        if kind != want && args.role == Role::Gateway {
            bail!(
                "--node-id {:?} is a {kind} id but --role is gateway (router~...)",
                args.node_id
            );
        }
        return Ok(args.node_id.clone());
    }
    let Some((_, ns)) = args.node_id.rsplit_once('.') else {
        bail!(
            "--node-id {:?}: give Istio's node id or <pod>.<namespace>",
            args.node_id
        );
    };
    Ok(format!(
        "{want}~{}~{}~{ns}.svc.cluster.local",
        args.ip, args.node_id
    ))
}

pub fn envoy(args: &EnvoyArgs) -> anyhow::Result<serde_json::Value> {
    let id = node_id(args)?;
    let node = spar_translate::ProxyNode::parse_id(&id).context("--node-id")?;
    let (host, port) = args
        .xds_addr
        .rsplit_once(':')
        .with_context(|| format!("--xds-addr {:?}: want HOST:PORT", args.xds_addr))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("--xds-addr {:?}: bad port", args.xds_addr))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--label {l:?}: want KEY=VALUE"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    // An IP connects directly; a name is resolved by Envoy.
    let cluster_type = if host.parse::<std::net::IpAddr>().is_ok() {
        "STATIC"
    } else {
        "STRICT_DNS"
    };
    let ads_api = match args.ads {
        AdsApi::Sotw => "GRPC",
        AdsApi::Delta => "DELTA_GRPC",
    };
    Ok(json!({
        "node": {
            "id": id,
            "cluster": format!("{}.{}", node.workload_name, node.namespace),
            "metadata": {
                "NAMESPACE": node.namespace,
                "LABELS": labels,
                "SERVICE_ACCOUNT": args.service_account,
                "WORKLOAD_NAME": node.workload_name,
                "CLUSTER_ID": args.cluster_id,
                "MESH_ID": args.mesh_id,
                "NAME": node.name,
            },
        },
        "admin": {
            "address": { "socket_address": { "address": "127.0.0.1", "port_value": args.admin_port } },
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": ads_api,
                "transport_api_version": "V3",
                "grpc_services": [{ "envoy_grpc": { "cluster_name": "xds-grpc" } }],
                "set_node_on_first_message_only": true,
            },
            "cds_config": { "ads": {}, "resource_api_version": "V3" },
            "lds_config": { "ads": {}, "resource_api_version": "V3" },
        },
        "static_resources": {
            "clusters": [{
                "name": "xds-grpc",
                "type": cluster_type,
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": "xds-grpc",
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                        "socket_address": { "address": host, "port_value": port },
                    } } }] }],
                },
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": { "http2_protocol_options": {} },
                    },
                },
            }],
        },
    }))
}
