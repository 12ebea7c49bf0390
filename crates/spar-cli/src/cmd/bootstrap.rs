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
    Grpc(GrpcArgs),
}

/// Print (JSON) a gRPC xDS bootstrap for a proxyless gRPC application (point
/// `GRPC_XDS_BOOTSTRAP` at it and dial `xds:///<host>:<port>`). The node carries
/// `GENERATOR: grpc`, which tells the control plane to serve gRPC's subset of xDS.
#[derive(clap::Args)]
pub struct GrpcArgs {
    /// Istio's node id, or `<pod>.<namespace>`.
    #[arg(long)]
    pub node_id: String,

    /// The workload's IP, when --node-id is the short form.
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: String,

    /// The control plane's xDS address.
    #[arg(long, default_value = "127.0.0.1:15010")]
    pub xds_addr: String,

    /// Workload labels (LABELS metadata), `key=value`, repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,

    #[arg(long, default_value = "default")]
    pub service_account: String,
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

    /// Connect to the control plane's secure port (15012) over TLS, trusting this root
    /// (PEM); the server is checked as `istiod.istio-system.svc`. Envoy then gets its own
    /// workload certificate (`default`, `ROOTCA`) over SDS.
    #[arg(long, value_name = "FILE")]
    pub xds_root_cert: Option<std::path::PathBuf>,

    /// A bearer token (`--ca-tokens` of `spar control-plane`) proving the workload's
    /// identity on the secure port; read now and sent as `authorization` metadata.
    #[arg(long, value_name = "FILE", requires = "xds_root_cert")]
    pub xds_token_file: Option<std::path::PathBuf>,
}

/// The name the control plane's serving certificate carries, as istiod's does.
const XDS_SERVER_NAME: &str = "istiod.istio-system.svc";

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    match &args.command {
        Command::Envoy(a) => {
            let b = envoy(a)?;
            println!("{}", serde_json::to_string_pretty(&b)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Grpc(a) => {
            let b = grpc(a)?;
            println!("{}", serde_json::to_string_pretty(&b)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn node_id(node_id: &str, role: Role, ip: &str) -> anyhow::Result<String> {
    let want = match role {
        Role::Sidecar => "sidecar",
        Role::Gateway => "router",
    };
    if node_id.contains('~') {
        let kind = node_id.split('~').next().unwrap_or("");
        if kind != want && role == Role::Gateway {
            bail!("--node-id {node_id:?} is a {kind} id but --role is gateway (router~...)");
        }
        return Ok(node_id.to_string());
    }
    let Some((_, ns)) = node_id.rsplit_once('.') else {
        bail!("--node-id {node_id:?}: give Istio's node id or <pod>.<namespace>");
    };
    Ok(format!("{want}~{ip}~{node_id}~{ns}.svc.cluster.local"))
}

fn labels(list: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for l in list {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--label {l:?}: want KEY=VALUE"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

pub fn grpc(args: &GrpcArgs) -> anyhow::Result<serde_json::Value> {
    let id = node_id(&args.node_id, Role::Sidecar, &args.ip)?;
    let node = spar_translate::ProxyNode::parse_id(&id).context("--node-id")?;
    Ok(json!({
        "xds_servers": [{
            "server_uri": args.xds_addr,
            "channel_creds": [{ "type": "insecure" }],
            "server_features": ["xds_v3"],
        }],
        "node": {
            "id": id,
            "metadata": {
                "GENERATOR": "grpc",
                "NAMESPACE": node.namespace,
                "LABELS": labels(&args.labels)?,
                "SERVICE_ACCOUNT": args.service_account,
                "WORKLOAD_NAME": node.workload_name,
                "INSTANCE_IPS": node.ip,
            },
            "locality": {},
        },
    }))
}

pub fn envoy(args: &EnvoyArgs) -> anyhow::Result<serde_json::Value> {
    let id = node_id(&args.node_id, args.role, &args.ip)?;
    let node = spar_translate::ProxyNode::parse_id(&id).context("--node-id")?;
    let (host, port) = args
        .xds_addr
        .rsplit_once(':')
        .with_context(|| format!("--xds-addr {:?}: want HOST:PORT", args.xds_addr))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("--xds-addr {:?}: bad port", args.xds_addr))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let labels = labels(&args.labels)?;
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
    let mut grpc_service = json!({ "envoy_grpc": { "cluster_name": "xds-grpc" } });
    if let Some(path) = &args.xds_token_file {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("--xds-token-file {}", path.display()))?;
        let token = token.trim();
        if token.is_empty() {
            bail!("--xds-token-file {}: the file is empty", path.display());
        }
        grpc_service["initial_metadata"] =
            json!([{ "key": "authorization", "value": format!("Bearer {token}") }]);
    }
    let mut xds_cluster = json!({
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
    });
    if let Some(root) = &args.xds_root_cert {
        let root = std::fs::canonicalize(root)
            .with_context(|| format!("--xds-root-cert {}", root.display()))?;
        xds_cluster["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": XDS_SERVER_NAME,
                "common_tls_context": {
                    "alpn_protocols": ["h2"],
                    "validation_context": {
                        "trusted_ca": { "filename": root },
                        "match_typed_subject_alt_names": [{
                            "san_type": "DNS",
                            "matcher": { "exact": XDS_SERVER_NAME },
                        }],
                    },
                },
            },
        });
    }
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
                "grpc_services": [grpc_service],
                "set_node_on_first_message_only": true,
            },
            "cds_config": { "ads": {}, "resource_api_version": "V3" },
            "lds_config": { "ads": {}, "resource_api_version": "V3" },
        },
        "static_resources": { "clusters": [xds_cluster] },
    }))
}
