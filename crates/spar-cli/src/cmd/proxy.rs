//! `spar proxy`: the data plane. Connects to the control plane over ADS (Delta by default),
//! applies what it is sent to an immutable snapshot, and carries traffic on the listeners
//! the snapshot holds. Drains on SIGTERM, Ctrl-C or `POST /quitquitquit`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use spar_proxy::{Proxy, ProxyHandler, ProxyOptions, Store};
use spar_xds::client::{ClientConfig, Mode, ServerTls, XdsClient};

/// Run the data plane (sidecar or gateway) against a control plane.
///
/// The node is given as Istio's id (`--node-id sidecar~10.0.0.5~web-1.default~default.svc.cluster.local`)
/// or built from `--role`, `--workload`, `--namespace`, `--ip`. Listeners come from xDS:
/// a gateway listens on its Gateway servers' ports; a sidecar on `--outbound-port` (15001)
/// and `--inbound-port` (15006). The admin server (`/ready`, `/config_dump`,
/// `/stats/prometheus`, `POST /drain`, `POST /quitquitquit`) listens on 127.0.0.1
/// `--admin-port`; the address in use is printed on standard error as
/// `admin listening on ADDR`.
#[derive(clap::Args)]
pub struct Args {
    /// The control plane's xDS address: plaintext (`host:15010`), or its authenticated
    /// port (`https://host:15012`, checked against --ca-root as --ca-server-name, the proxy
    /// proving itself with --ca-token-file), which gateways need for `credentialName`
    /// certificates: the control plane sends keys only there.
    #[arg(long, default_value = "127.0.0.1:15010")]
    pub xds_addr: String,

    /// Istio's node id; overrides --role, --workload, --namespace and --ip.
    #[arg(long)]
    pub node_id: Option<String>,

    #[arg(long, value_enum, default_value_t = Role::Sidecar)]
    pub role: Role,

    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,

    /// The workload (pod) name; default `<role>-<process id>`.
    #[arg(long)]
    pub workload: Option<String>,

    /// Workload labels (LABELS metadata), `key=value`, repeatable or comma-separated.
    #[arg(long = "labels", alias = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,

    #[arg(long, default_value = "127.0.0.1")]
    pub ip: IpAddr,

    #[arg(long, default_value = "default")]
    pub service_account: String,

    /// Admin server port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 15000)]
    pub admin_port: u16,

    /// Where the sidecar's `virtualOutbound` listener binds.
    #[arg(long, default_value_t = 15001)]
    pub outbound_port: u16,

    /// Where the sidecar's `virtualInbound` listener binds.
    #[arg(long, default_value_t = 15006)]
    pub inbound_port: u16,

    /// Serve an explicit forward proxy on 127.0.0.1 at this port (0: any free port), for
    /// applications without iptables capture: `HTTP_PROXY=http://127.0.0.1:PORT` (HTTP
    /// absolute-form requests), `CONNECT`, and `ALL_PROXY=socks5h://127.0.0.1:PORT`. Mesh
    /// names (`reviews`, `reviews.ns`, FQDNs) route as a captured connection would. The
    /// address in use is printed as `forward proxy listening on ADDR`.
    #[arg(long)]
    pub forward_port: Option<u16>,

    /// The CA to get this proxy's certificate from (`https://host:port`, the control
    /// plane's `--ca-addr`). The proxy makes its own key, asks for
    /// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`, serves the answer as
    /// its `default` and `ROOTCA` secrets and renews it at half its lifetime.
    #[arg(long, requires = "ca_root")]
    pub ca_addr: Option<String>,

    /// The CA's root certificate (PEM), e.g. the control plane's `<data-dir>/ca/root-cert.pem`.
    #[arg(long)]
    pub ca_root: Option<std::path::PathBuf>,

    /// A file holding the bearer token the CA maps to this proxy's identity (`--ca-tokens`
    /// on the control plane). Without it, the CA must accept the proxy's current certificate.
    #[arg(long)]
    pub ca_token_file: Option<std::path::PathBuf>,

    /// The name on the CA's serving certificate.
    #[arg(long, default_value = "istiod.istio-system.svc")]
    pub ca_server_name: String,

    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,

    /// The certificate lifetime to ask for (Go syntax: 1h, 30m); the CA's default when not
    /// given.
    #[arg(long, value_parser = parse_duration)]
    pub cert_ttl: Option<Duration>,

    /// How long draining waits for open connections (Go syntax: 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_time: Duration,

    #[arg(long, value_enum, default_value_t = Ads::Delta)]
    pub ads: Ads,
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Role {
    Sidecar,
    Gateway,
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Ads {
    Delta,
    Sotw,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    spar_model::duration::parse_duration(s).map_err(|e| e.to_string())
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

fn labels(list: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in list
        .iter()
        .flat_map(|l| l.split(','))
        .filter(|l| !l.is_empty())
    {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--labels {l:?}: want KEY=VALUE"))?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// The node sent on every stream: Istio's id and the metadata istiod reads.
fn node(args: &Args) -> anyhow::Result<Node> {
    let id = match &args.node_id {
        Some(id) => id.clone(),
        None => {
            let kind = match args.role {
                Role::Sidecar => "sidecar",
                Role::Gateway => "router",
            };
            let default_name = format!("{kind}-{}", std::process::id());
            let workload = args.workload.as_deref().unwrap_or(&default_name);
            format!(
                "{kind}~{}~{workload}.{ns}~{ns}.svc.cluster.local",
                args.ip,
                ns = args.namespace
            )
        }
    };
    let parsed = spar_translate::ProxyNode::parse_id(&id).context("--node-id")?;
    if args.node_id.is_some() && args.role == Role::Gateway && !id.starts_with("router~") {
        bail!("--node-id {id:?} is not a gateway id (router~...) but --role is gateway");
    }
    let label_struct = Struct {
        fields: labels(&args.labels)?
            .iter()
            .map(|(k, v)| (k.clone(), string(v)))
            .collect(),
    };
    let mut fields: std::collections::HashMap<String, Value> = [
        ("NAMESPACE", parsed.namespace.as_str()),
        ("SERVICE_ACCOUNT", args.service_account.as_str()),
        ("WORKLOAD_NAME", parsed.workload_name.as_str()),
        ("NAME", parsed.name.as_str()),
        ("CLUSTER_ID", "Kubernetes"),
        ("MESH_ID", "cluster.local"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), string(v)))
    .collect();
    fields.insert(
        "LABELS".to_string(),
        Value {
            kind: Some(Kind::StructValue(label_struct)),
        },
    );
    Ok(Node {
        id,
        cluster: format!("{}.{}", parsed.workload_name, parsed.namespace),
        metadata: Some(Struct { fields }),
        ..Default::default()
    })
}

/// Stops the identity task when the proxy stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the identity task needs, when `--ca-addr` is given.
fn identity_options(
    args: &Args,
    node: &Node,
) -> anyhow::Result<Option<spar_proxy::identity::IdentityOptions>> {
    let Some(ca_addr) = &args.ca_addr else {
        return Ok(None);
    };
    let root = args.ca_root.as_ref().context("--ca-addr needs --ca-root")?;
    let ca_root_pem = std::fs::read_to_string(root)
        .with_context(|| format!("reading the CA root {}", root.display()))?;
    let token = match &args.ca_token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading the CA token file {}", p.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let namespace = node_namespace(node).unwrap_or_else(|| args.namespace.clone());
    let id = spar_ca::SpiffeId::new(&args.trust_domain, &namespace, &args.service_account)
        .context("the proxy's SPIFFE identity (--trust-domain, --namespace, --service-account)")?;
    Ok(Some(spar_proxy::identity::IdentityOptions {
        ca_addr: ca_addr.clone(),
        ca_root_pem,
        ca_server_name: args.ca_server_name.clone(),
        token,
        id,
        ttl: args.cert_ttl.unwrap_or_default(),
    }))
}

/// The namespace in the node's metadata (from `--node-id` or `--namespace`).
fn node_namespace(node: &Node) -> Option<String> {
    match node
        .metadata
        .as_ref()?
        .fields
        .get("NAMESPACE")?
        .kind
        .as_ref()?
    {
        Kind::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: &Args) -> anyhow::Result<()> {
    let node = node(args)?;
    let store = Arc::new(Store::default());
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let mut bind = BTreeMap::new();
    bind.insert(
        "virtualOutbound".to_string(),
        SocketAddr::new(any, args.outbound_port),
    );
    bind.insert(
        "virtualInbound".to_string(),
        SocketAddr::new(any, args.inbound_port),
    );
    let options = ProxyOptions {
        admin: Some(SocketAddr::from(([127, 0, 0, 1], args.admin_port))),
        bind,
        drain_time: args.drain_time,
        log_level: Some(spar_proxy::proxy::LogControl {
            change: Arc::new(crate::logging::change),
            current: Arc::new(crate::logging::current),
        }),
        forward: args
            .forward_port
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
        namespace: node_namespace(&node).unwrap_or_else(|| args.namespace.clone()),
        after_config: Some(Arc::new(crate::allocator::return_freed_pages)),
    };
    let proxy = Proxy::start(store.clone(), options)
        .await
        .context("starting the proxy")?;
    if let Some(a) = proxy.admin_addr {
        eprintln!("admin listening on {a}");
    }
    if let Some(a) = proxy.listener_addr(spar_proxy::proxy::FORWARD_LISTENER) {
        eprintln!("forward proxy listening on {a}");
    }
    let _identity = identity_options(args, &node)?
        .map(|opts| AbortOnDrop(tokio::spawn(spar_proxy::identity::run(store.clone(), opts))));
    let server = if args.xds_addr.contains("://") {
        args.xds_addr.clone()
    } else {
        format!("http://{}", args.xds_addr)
    };
    let tls = if server.starts_with("https://") {
        let root = args
            .ca_root
            .as_ref()
            .context("an https:// --xds-addr needs --ca-root (the mesh root the control plane's certificate chains to)")?;
        Some(ServerTls {
            root_pem: std::fs::read_to_string(root)
                .with_context(|| format!("reading the CA root {}", root.display()))?,
            server_name: args.ca_server_name.clone(),
        })
    } else {
        None
    };
    tracing::info!(node = %node.id, %server, "connecting to the control plane");
    let client = XdsClient::new(
        ClientConfig {
            server,
            node,
            mode: match args.ads {
                Ads::Delta => Mode::Delta,
                Ads::Sotw => Mode::Sotw,
            },
            token_file: tls.as_ref().and(args.ca_token_file.clone()),
            tls,
            ..Default::default()
        },
        Arc::new(ProxyHandler::new(store)),
    );
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let xds = tokio::spawn(async move {
        client
            .run(async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; draining"),
        _ = term.recv() => tracing::info!("SIGTERM; draining"),
        _ = proxy.quit_requested() => tracing::info!("/quitquitquit; draining"),
        r = xds => {
            match r {
                Ok(Err(e)) => bail!("xDS client: {e}"),
                Ok(Ok(())) => {}
                Err(e) => bail!("xDS client task: {e}"),
            }
        }
    }
    proxy.drain().await;
    let _ = stop_tx.send(true);
    Ok(())
}
