//! `spar control-plane`: config store + registry + ADS server + monitoring endpoints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use spar_config::{watch_dir, Update, WatchOptions};
use spar_model::LoadOptions;
use spar_translate::type_url;
use spar_xds::jwks::{HttpFetcher, JwksOptions, JwksResolver};
use spar_xds::monitoring::{self, ConfigErrors, Monitoring};
use spar_xds::{
    AdsServer, Encoded, Metrics, Overlay, PushDebounce, ResourceSource, ServeOptions,
    SnapshotStore, StatusRegistry,
};
use tokio::net::TcpListener;

/// Serve Istio config from a directory to Envoy-compatible proxies over xDS.
///
/// Watches `--config-dir` recursively; each changed file is validated on its own, and a file
/// that turns invalid keeps its last good version in force (its errors are logged, counted
/// in `spar_config_errors` and shown by `spar ctl`). Proxies connect with ADS (state of the
/// world or delta) on `--xds-addr`; `--monitoring-addr` serves `/metrics`, `/debug/syncz`
/// and `/debug/config_dump?proxyID=<id>`. Port 0 picks a free port; the addresses in use
/// are printed on standard error as `xds listening on ADDR` and
/// `monitoring listening on ADDR`. With `--ca-tokens`, `--data-dir` or `--ca-dir` it also
/// signs workload certificates on `--ca-addr` (`ca listening on ADDR`).
///
/// Two debounces apply: `--debounce` (file watch) before the directory is read again, then
/// `--push-debounce` (or `--push-debounce-endpoints` for endpoint-only changes, at most
/// `--push-debounce-max`) before connected proxies are pushed the new config.
///
/// RequestAuthentication `jwksUri`s are fetched by the control plane (as istiod does) and
/// pushed inline: a config is published at once with the keys already fetched, and again
/// when a fetch brings new ones. A URI never fetched successfully rejects every token of
/// its rule; a failed refresh keeps the last good keys (see `--jwks-refresh`).
#[derive(clap::Args)]
pub struct Args {
    /// Directory of Istio and Kubernetes YAML/JSON, watched recursively.
    #[arg(long, value_name = "DIR")]
    pub config_dir: PathBuf,

    /// Where proxies connect (plaintext gRPC).
    #[arg(long, default_value = "127.0.0.1:15010")]
    pub xds_addr: SocketAddr,

    /// Metrics and debug endpoints.
    #[arg(long, default_value = "127.0.0.1:15014")]
    pub monitoring_addr: SocketAddr,

    /// File-watch debounce: quiet time after a file change before the directory is read
    /// again (Go syntax: 10ms, 1s). Kept short: it only lets a multi-file write settle;
    /// bursts of changes are merged by the push debounce below.
    #[arg(long, default_value = "10ms", value_parser = parse_debounce)]
    pub debounce: Duration,

    /// Push debounce (Istio's PILOT_DEBOUNCE_AFTER): a new config is in force at once for
    /// proxies that connect, but connected proxies are pushed to only after this quiet time
    /// with no further change, so a burst of changes is one push. 0 pushes every change.
    #[arg(long, default_value = "100ms", value_parser = parse_debounce)]
    pub push_debounce: Duration,

    /// The push debounce when every change since the last push touched only endpoints
    /// (Endpoints, EndpointSlice): short, because endpoint changes are frequent, small and
    /// must reach proxies fast.
    #[arg(long, default_value = "10ms", value_parser = parse_debounce)]
    pub push_debounce_endpoints: Duration,

    /// The longest a push waits under a steady stream of changes (Istio's
    /// PILOT_DEBOUNCE_MAX).
    #[arg(long, default_value = "10s", value_parser = parse_debounce)]
    pub push_debounce_max: Duration,

    /// How many proxies may have a push in flight (sent, not yet acknowledged) at once;
    /// the rest wait their turn. Bounds the memory a push to many proxies takes (Istio's
    /// PILOT_PUSH_THROTTLE).
    #[arg(long, default_value_t = spar_xds::DEFAULT_PUSH_CONCURRENCY)]
    pub push_concurrency: usize,

    /// How often each RequestAuthentication `jwksUri` is fetched again after a success
    /// (istiod's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL), so rotated keys reach proxies.
    #[arg(long, value_name = "DURATION", default_value = "20m", value_parser = parse_debounce)]
    pub jwks_refresh: Duration,

    /// After a failed `jwksUri` fetch, the wait before the first retry; doubled on each
    /// further failure, at most `--jwks-refresh`. Until a URI's first success its rules
    /// reject every token; after it, a failure keeps the last good keys in force.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_debounce)]
    pub jwks_retry: Duration,

    /// The longest one `jwksUri` fetch may take (istiod: 5s); a JWT rule's `timeout` sets
    /// another for its URI.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_debounce)]
    pub jwks_timeout: Duration,

    /// Namespace for resources that do not set `metadata.namespace`.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,

    /// Testing only: also serve a cluster with this name that Envoy rejects (a zero
    /// connect timeout), to check that NACKs are tracked end to end.
    #[arg(long, hide = true, value_name = "NAME")]
    pub test_serve_invalid_cluster: Option<String>,

    /// Testing only: also serve a valid, empty cluster with this name, so a test can see
    /// Spar's resources in a real proxy whatever the translator emits.
    #[arg(long, hide = true, value_name = "NAME")]
    pub test_serve_cluster: Option<String>,

    #[command(flatten)]
    pub ca: super::ca::CaArgs,
}

fn parse_debounce(s: &str) -> Result<Duration, String> {
    spar_model::duration::parse_duration(s).map_err(|e| e.to_string())
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
    let metrics = Arc::new(Metrics::new());
    let status = Arc::new(StatusRegistry::default());
    let config_errors = Arc::new(ConfigErrors::default());
    // Start empty, then publish what the directory holds; the watcher publishes later changes.
    let debounce = PushDebounce {
        after: args.push_debounce,
        endpoints_after: args.push_debounce_endpoints,
        max: args.push_debounce_max,
    };
    let store = Arc::new(
        SnapshotStore::with_debounce(Default::default(), debounce)
            .context("starting the config store")?,
    );
    let opts = WatchOptions {
        debounce: args.debounce,
        load: LoadOptions {
            default_namespace: args.namespace.clone(),
            // With a CA, every proxy can hold a mesh identity: auto mTLS and the default
            // PERMISSIVE mTLS chains follow (see LoadOptions::workload_identities).
            workload_identities: args.ca.enabled(),
        },
        drop_source_trees: true,
    };
    // MeshConfig caCertificates: trust anchors beside the CA's root, kept current from
    // the config (before each snapshot is published, so the push that follows carries them).
    let extra_roots = Arc::new(spar_ca::bundle::ExtraRoots::default());
    // RequestAuthentication jwksUris: fetched here, published with the config as input
    // to translation; a fetch that changes keys publishes the last config again.
    let jwks = Arc::new(JwksResolver::new(
        JwksOptions {
            refresh: args.jwks_refresh,
            retry: args.jwks_retry,
            timeout: args.jwks_timeout,
        },
        HttpFetcher::system(),
        metrics.clone(),
    ));
    let publisher = Arc::new(Publisher {
        store: store.clone(),
        jwks: jwks.clone(),
        lock: Mutex::new(()),
    });
    tokio::spawn(jwks.clone().run({
        let publisher = publisher.clone();
        move || {
            let publisher = publisher.clone();
            // Publishing builds the registry: off the async threads.
            tokio::task::spawn_blocking(move || publisher.republish_with_keys());
        }
    }));
    let on_update = {
        let publisher = publisher.clone();
        let metrics = metrics.clone();
        let config_errors = config_errors.clone();
        let extra_roots = extra_roots.clone();
        move |u: Update| apply(&publisher, &metrics, &config_errors, &extra_roots, u)
    };
    let (_watcher, initial) = watch_dir(&args.config_dir, opts, on_update)
        .with_context(|| format!("watching {}", args.config_dir.display()))?;
    apply(&publisher, &metrics, &config_errors, &extra_roots, initial);

    let xds = spar_xds::bind(args.xds_addr).await.with_context(|| {
        format!(
            "binding the xDS address {} (is the port in use?)",
            args.xds_addr
        )
    })?;
    let mon = TcpListener::bind(args.monitoring_addr)
        .await
        .with_context(|| {
            format!(
                "binding the monitoring address {} (is the port in use?)",
                args.monitoring_addr
            )
        })?;
    eprintln!("xds listening on {}", xds.local_addr()?);
    eprintln!("monitoring listening on {}", mon.local_addr()?);
    tokio::spawn(monitoring::serve(
        mon,
        Arc::new(Monitoring {
            metrics: metrics.clone(),
            status: status.clone(),
            config_errors,
        }),
    ));
    let extra = test_clusters(args);
    if extra.types.is_empty() {
        run_ads(xds, store, status, metrics, args, extra_roots).await
    } else {
        let source = Overlay {
            inner: store,
            extra,
        };
        run_ads(xds, source, status, metrics, args, extra_roots).await
    }
}

/// The hidden `--test-serve-*` clusters; empty in normal use.
fn test_clusters(args: &Args) -> Encoded {
    let mut extra = Encoded::default();
    let cluster = |name: &str, seconds: i64| Cluster {
        name: name.to_string(),
        connect_timeout: Some(envoy_types::pb::google::protobuf::Duration { seconds, nanos: 0 }),
        ..Default::default()
    };
    if let Some(name) = &args.test_serve_cluster {
        extra.insert(type_url::CLUSTER, name, &cluster(name, 1));
    }
    if let Some(name) = &args.test_serve_invalid_cluster {
        // Envoy requires connect_timeout > 0 and rejects the whole CDS response.
        extra.insert(type_url::CLUSTER, name, &cluster(name, 0));
    }
    extra
}

async fn run_ads<S: ResourceSource>(
    listener: TcpListener,
    source: S,
    status: Arc<StatusRegistry>,
    metrics: Arc<Metrics>,
    args: &Args,
    extra_roots: Arc<spar_ca::bundle::ExtraRoots>,
) -> anyhow::Result<()> {
    let ads = AdsServer::new(source, status, metrics).push_concurrency(args.push_concurrency);
    // Istio's CSR API on --ca-addr, when a CA flag is given (see `ca::CaArgs`), with the
    // authenticated ADS beside it, as istiod serves both on 15012.
    super::ca::start(&args.ca, extra_roots, |router, issuer| {
        router.add_service(ads.secure_service(issuer))
    })
    .await?;
    ads.serve(listener, ServeOptions::default(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("serving xDS")
}

/// Publishes configs to the store, one at a time: a config from the watcher with the
/// `jwksUri` keys fetched so far, or the last config again when fetched keys changed.
struct Publisher {
    store: Arc<SnapshotStore>,
    jwks: Arc<JwksResolver>,
    /// Held across reading the keys and publishing, so a republish never overwrites a
    /// newer config and no change of keys is missed.
    lock: Mutex<()>,
}

impl Publisher {
    fn publish(&self, mut config: spar_model::ConfigSet) -> u64 {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let uris = spar_translate::jwks_uris(&config);
        config.set_resolved_jwks(self.jwks.track(&uris));
        self.store.publish(config)
    }

    /// The config in force again, with the keys fetched now (nothing when they are the
    /// ones it has).
    fn republish_with_keys(&self) {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.store.load();
        let keys = self.jwks.resolved();
        if *current.config.resolved_jwks() == *keys {
            return;
        }
        let mut config = current.config.clone();
        drop(current);
        config.set_resolved_jwks(keys);
        let version = self.store.publish(config);
        tracing::info!(version, "config published with new jwksUri keys");
    }
}

fn apply(
    publisher: &Publisher,
    metrics: &Metrics,
    config_errors: &ConfigErrors,
    extra_roots: &spar_ca::bundle::ExtraRoots,
    u: Update,
) {
    // Report each bad file when it changes, not again on every later update.
    for (file, errors) in u.bad_files.iter().filter(|(f, _)| u.changed.contains(f)) {
        for d in errors {
            eprintln!("spar: config: {d}");
        }
        eprintln!("spar: config: {file}: invalid; its last good version (if any) stays in force");
    }
    metrics
        .config_errors
        .set(i64::try_from(u.bad_files.len()).unwrap_or(i64::MAX));
    config_errors.set(
        u.bad_files
            .iter()
            .map(|(f, ds)| (f.clone(), ds.iter().map(ToString::to_string).collect()))
            .collect(),
    );
    let resources = u.config.resources().len();
    let mut config = u.config;
    let ca_certificates = &config.mesh().ca_certificates;
    if extra_roots.set(ca_certificates.iter().filter_map(|c| c.pem.as_deref())) {
        tracing::info!(
            roots = ca_certificates.len(),
            "trust bundle: MeshConfig caCertificates changed"
        );
    }
    // Diagnostics were made while loading and the control plane never asks for a field's
    // line again: the positioned YAML trees (~14x the YAML) need not stay in memory.
    config.drop_source_trees();
    let version = publisher.publish(config);
    tracing::info!(
        version,
        resources,
        bad_files = u.bad_files.len(),
        "config published"
    );
}
