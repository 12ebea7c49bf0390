//! The proxy's side of xDS: one ADS stream to the control plane, Delta by default and state
//! of the world as a fallback, that hands each response to an [`XdsHandler`] and ACKs or
//! NACKs it.
//!
//! The client owns the protocol (subscriptions, nonces, versions, reconnects); the handler
//! owns the config (validate, apply atomically, say which names it needs next). The client
//! never tells the handler to clear anything: while the control plane is away the last
//! accepted config stays in force, and on reconnect the client tells the server what the
//! handler holds (Delta `initial_resource_versions`, SotW `version_info`) so unchanged
//! resources are not resent. Subscriptions follow Envoy's warming order (see `state.rs`).
//!
//! `XdsHandler::apply` runs on the client's task, between reading a response and sending
//! its ACK: it should build the new config and swap it in (an `ArcSwap` store), not wait
//! on I/O.

mod backoff;
mod delta;
mod sotw;
mod state;
mod stats;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::rpc;
use tonic::transport::Endpoint;

pub use stats::ClientStats;

use backoff::Backoff;
use state::State;

/// Which ADS variant to speak first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Incremental xDS; falls back to [`Mode::Sotw`] if the server does not implement it.
    #[default]
    Delta,
    /// State of the world.
    Sotw,
}

/// Where the control plane is and who this proxy is.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://host:port` of the control plane's plaintext xDS port (15010).
    pub server: String,
    /// Sent on the first request of every stream; `id` is Istio's node id.
    pub node: Node,
    pub mode: Mode,
    /// First reconnect delay; doubles per failed attempt up to `backoff_max` (jittered).
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// For an `https://` server (the secure port, 15012): the root its certificate chains
    /// to (PEM) and the name it carries.
    pub tls: Option<ServerTls>,
    /// A bearer token proving the proxy's identity on the secure port, re-read from this
    /// file for every stream (tokens rotate).
    pub token_file: Option<std::path::PathBuf>,
}

/// How the client checks the control plane's certificate.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub root_pem: String,
    /// e.g. `istiod.istio-system.svc`.
    pub server_name: String,
}

impl ClientConfig {
    /// The defaults (Delta, 200 ms to 15 s backoff) for `server` and `node`.
    pub fn new(server: impl Into<String>, node: Node) -> ClientConfig {
        ClientConfig {
            server: server.into(),
            node,
            ..ClientConfig::default()
        }
    }
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            server: "http://127.0.0.1:15010".to_string(),
            node: Node::default(),
            mode: Mode::Delta,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(15),
            tls: None,
            token_file: None,
        }
    }
}

/// One resource of a response.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedResource {
    pub name: String,
    /// Delta: the server's version of the resource; SotW: a hash of its bytes.
    pub version: String,
    pub resource: prost_types::Any,
}

/// One response of one type, as the handler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeUpdate {
    pub type_url: String,
    /// SotW `version_info` or Delta `system_version_info`.
    pub version: String,
    pub resources: Vec<NamedResource>,
    /// Names that no longer exist (Delta `removed_resources`; for SotW, what the handler
    /// held before and the response no longer lists).
    pub removed: Vec<String>,
    /// True for SotW: `resources` is the whole set of this type. False for Delta.
    pub full_state: bool,
}

/// The proxy's side: validates and applies config, and says which names it needs.
pub trait XdsHandler: Send + Sync + 'static {
    /// Validate and apply one response. Err(text) => NACK with error_detail = text, and nothing changed.
    fn apply(&self, update: &TypeUpdate) -> Result<(), String>;
    /// The names to subscribe for a non-wildcard type (EDS cluster names, RDS route names, SDS secret names)
    /// after the last apply; None = wildcard. Called after every successful apply.
    fn wanted(&self, type_url: &str) -> Option<BTreeSet<String>>;
    fn on_connected(&self, _connected: bool) {}
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the control-plane address {server:?} is not a valid URI ({reason}); use http://host:port, e.g. http://127.0.0.1:15010")]
    InvalidServer { server: String, reason: String },
    #[error("the node has no id; set it to Istio's form, e.g. sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local")]
    NoNodeId,
}

/// Why one stream ended; the client logs it and reconnects.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StreamError {
    #[error("reading the xDS token file {path}: {source}")]
    Token {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot connect to the control plane: {0} (is it running and reachable?)")]
    Connect(#[from] tonic::transport::Error),
    #[error("the control plane ended the stream: {0}")]
    Status(#[from] tonic::Status),
    #[error("the control plane closed the stream")]
    Closed,
}

/// How one stream went.
pub(crate) struct Ended {
    /// Responses received; a stream that got any resets the backoff.
    pub(crate) responses: u64,
    pub(crate) error: StreamError,
}

/// What both stream variants share: config, handler, counters and the state that outlives
/// a stream.
pub(crate) struct Ctx {
    pub(crate) cfg: ClientConfig,
    pub(crate) handler: Arc<dyn XdsHandler>,
    pub(crate) stats: Arc<ClientStats>,
    pub(crate) state: State,
}

/// Marks the stream connected for its lifetime (also when the stream is dropped on shutdown).
pub(crate) struct Connected(Arc<ClientStats>, Arc<dyn XdsHandler>);

impl Connected {
    pub(crate) fn new(ctx: &Ctx) -> Connected {
        ctx.stats.on_connect();
        ctx.handler.on_connected(true);
        Connected(ctx.stats.clone(), ctx.handler.clone())
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.on_disconnect();
        self.1.on_connected(false);
    }
}

/// The `error_detail` of a NACK.
pub(crate) fn nack_status(message: String) -> rpc::Status {
    rpc::Status {
        code: tonic::Code::InvalidArgument as i32,
        message,
        details: Vec::new(),
    }
}

/// Responses of an ADS stream can carry a whole mesh.
pub(crate) const MAX_MESSAGE: usize = 256 << 20;

/// An ADS client for one proxy. Build it, take [`XdsClient::stats`], then [`XdsClient::run`].
pub struct XdsClient {
    ctx: Ctx,
}

impl XdsClient {
    pub fn new(cfg: ClientConfig, handler: Arc<dyn XdsHandler>) -> Self {
        XdsClient {
            ctx: Ctx {
                cfg,
                handler,
                stats: Arc::new(ClientStats::default()),
                state: State::default(),
            },
        }
    }

    /// The counters, readable while the client runs.
    pub fn stats(&self) -> Arc<ClientStats> {
        self.ctx.stats.clone()
    }

    /// Runs until `shutdown` resolves; reconnects with jittered exponential backoff; on Delta failure with
    /// UNIMPLEMENTED falls back to SotW (and logs it).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ClientError> {
        let mut ctx = self.ctx;
        if ctx.cfg.node.id.is_empty() {
            return Err(ClientError::NoNodeId);
        }
        let invalid = |reason: String| ClientError::InvalidServer {
            server: ctx.cfg.server.clone(),
            reason,
        };
        let mut endpoint =
            Endpoint::from_shared(ctx.cfg.server.clone()).map_err(|e| invalid(e.to_string()))?;
        if let Some(tls) = &ctx.cfg.tls {
            let config = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(&tls.root_pem))
                .domain_name(tls.server_name.clone());
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| invalid(format!("TLS settings: {e}")))?;
        }
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            // Notice a control plane that vanished without closing the connection.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let mut backoff = Backoff::new(ctx.cfg.backoff_initial, ctx.cfg.backoff_max);
        let mut mode = ctx.cfg.mode;
        tokio::pin!(shutdown);
        loop {
            let ended = tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                ended = stream(&mut ctx, &endpoint, mode) => ended,
            };
            if mode == Mode::Delta && is_unimplemented(&ended.error) {
                tracing::warn!(
                    server = %ctx.cfg.server,
                    "the control plane does not implement Delta xDS; using state of the world"
                );
                ctx.stats.on_fallback();
                mode = Mode::Sotw;
                continue;
            }
            if ended.responses > 0 {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            tracing::warn!(
                server = %ctx.cfg.server,
                error = %ended.error,
                retry_in_ms = delay.as_millis() as u64,
                "xDS stream ended; keeping the last accepted config"
            );
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

async fn stream(ctx: &mut Ctx, endpoint: &Endpoint, mode: Mode) -> Ended {
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => {
            return Ended {
                responses: 0,
                error: e.into(),
            }
        }
    };
    match mode {
        Mode::Delta => delta::run(ctx, channel).await,
        Mode::Sotw => sotw::run(ctx, channel).await,
    }
}

/// Wraps a stream's requests with the bearer token, when the config names a token file.
pub(crate) fn with_token<T>(cfg: &ClientConfig, msg: T) -> Result<tonic::Request<T>, StreamError> {
    let mut req = tonic::Request::new(msg);
    if let Some(path) = &cfg.token_file {
        let token = std::fs::read_to_string(path).map_err(|source| StreamError::Token {
            path: path.clone(),
            source,
        })?;
        let value = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| StreamError::Token {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the token is not a valid header value",
                ),
            })?;
        req.metadata_mut().insert("authorization", value);
    }
    Ok(req)
}

fn is_unimplemented(e: &StreamError) -> bool {
    matches!(e, StreamError::Status(s) if s.code() == tonic::Code::Unimplemented)
}
