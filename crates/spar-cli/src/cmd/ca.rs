//! The CA inside `spar control-plane`: its flags, where the root comes from (plugged-in
//! directory, persisted data directory, or generated for this run), who may ask for
//! certificates, and serving Istio's CSR API over TLS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use spar_ca::{
    AnyOf, AuthError, Authenticator, Ca, CaService, Caller, PeerCertificate, SpiffeId, TokenFile,
    TtlPolicy,
};
use spar_xds::{Issued, WorkloadIdentity};
use tokio::net::TcpListener;
use tonic::transport::server::{Router, TcpConnectInfo, TlsConnectInfo};
use tonic::transport::Server;
use tonic::Status;

/// CA flags of `spar control-plane`.
///
/// The CA starts when it has a root to sign with or callers to check: any of `--ca-dir`,
/// `--data-dir` or `--ca-tokens`. Workloads call
/// `istio.v1.auth.IstioCertificateService/CreateCertificate` on `--ca-addr` over TLS (the
/// serving certificate names `istiod.istio-system.svc` and `localhost`), authenticated by
/// `authorization: Bearer <token>` from `--ca-tokens`, or by presenting their current
/// certificate to renew it.
#[derive(clap::Args, Debug, Clone)]
pub struct CaArgs {
    /// Where workloads request certificates (TLS gRPC).
    #[arg(long, default_value = "127.0.0.1:15012")]
    pub ca_addr: SocketAddr,

    /// State kept across restarts: the generated root and its key go to DIR/ca (mode 0700,
    /// key 0600) and are reused on the next start.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// A plugged-in CA in Istio's layout (ca-cert.pem, ca-key.pem, root-cert.pem,
    /// cert-chain.pem), e.g. an intermediate under an existing root. Wins over --data-dir.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,

    /// Trust domain of the SPIFFE IDs the CA signs.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,

    /// Lifetime of a workload certificate when the request asks for none (Go syntax: 24h, 10m).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub workload_cert_ttl: Duration,

    /// Longest lifetime a workload may request; longer requests are refused.
    #[arg(long, default_value = "2160h", value_parser = parse_duration)]
    pub max_workload_cert_ttl: Duration,

    /// Bearer tokens, one `<token> <namespace>/<service-account>` per line; re-read when
    /// the file changes.
    #[arg(long, value_name = "FILE")]
    pub ca_tokens: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = spar_model::duration::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

impl CaArgs {
    /// Whether the control plane runs a CA at all.
    pub fn enabled(&self) -> bool {
        self.ca_dir.is_some() || self.data_dir.is_some() || self.ca_tokens.is_some()
    }
}

/// Loads or creates the CA named by the flags.
pub fn load(args: &CaArgs) -> anyhow::Result<Ca> {
    if let Some(dir) = &args.ca_dir {
        let ca = Ca::load_plugged(dir, &args.trust_domain)
            .with_context(|| format!("loading the plugged-in CA from {}", dir.display()))?;
        eprintln!(
            "ca root certificate {}",
            dir.join("root-cert.pem").display()
        );
        return Ok(ca);
    }
    if let Some(dir) = &args.data_dir {
        let ca = spar_ca::store::load_or_create(dir, &args.trust_domain)
            .with_context(|| format!("loading the CA from the data directory {}", dir.display()))?;
        eprintln!(
            "ca root certificate {}",
            dir.join(spar_ca::store::CA_SUBDIR)
                .join("root-cert.pem")
                .display()
        );
        return Ok(ca);
    }
    eprintln!(
        "spar: ca: no --data-dir or --ca-dir: using a root generated for this run only; \
         certificates it signs stop verifying after a restart"
    );
    Ok(Ca::generate(&args.trust_domain)?)
}

/// Starts the CA when the flags ask for one, serving until ctrl-c (or until the runtime
/// ends); returns the address it listens on (the real port when `--ca-addr` asked for 0).
/// `more` adds services to the same TLS port (the control plane's authenticated ADS),
/// given how callers are authenticated and certificates issued.
pub async fn start(
    args: &CaArgs,
    extra_roots: Arc<spar_ca::bundle::ExtraRoots>,
    more: impl FnOnce(Router, Arc<dyn WorkloadIdentity>) -> Router,
) -> anyhow::Result<Option<SocketAddr>> {
    if !args.enabled() {
        return Ok(None);
    }
    if args.workload_cert_ttl > args.max_workload_cert_ttl {
        anyhow::bail!(
            "--workload-cert-ttl {:?} is above --max-workload-cert-ttl {:?}",
            args.workload_cert_ttl,
            args.max_workload_cert_ttl
        );
    }
    let ca = Arc::new(load(args)?);
    let mut auths: Vec<Box<dyn Authenticator>> = Vec::new();
    if let Some(path) = &args.ca_tokens {
        let tokens = TokenFile::load(path, &args.trust_domain)
            .with_context(|| format!("reading the CA token file {}", path.display()))?;
        tracing::info!(tokens = tokens.len(), "CA tokens loaded");
        auths.push(Box::new(tokens));
    }
    auths.push(Box::new(PeerCertificate::new(
        vec![ca.root().clone()],
        &args.trust_domain,
    )));
    let ttl = TtlPolicy {
        default: args.workload_cert_ttl,
        max: args.max_workload_cert_ttl,
    };
    let auth: Arc<dyn Authenticator> = Arc::new(AnyOf(auths));
    let service = CaService::with_extra_roots(
        ca.clone(),
        Box::new(SharedAuth(auth.clone())),
        ttl,
        extra_roots.clone(),
    );
    let issuer = Arc::new(CaIdentity {
        ca: ca.clone(),
        auth,
        ttl: args.workload_cert_ttl,
        extra_roots,
    });
    let tls =
        spar_ca::server::tls_config(&ca).context("issuing the CA's TLS serving certificate")?;
    let listener = TcpListener::bind(args.ca_addr).await.with_context(|| {
        format!(
            "binding the CA address {} (is the port in use?)",
            args.ca_addr
        )
    })?;
    let addr = listener.local_addr()?;
    eprintln!("ca listening on {addr}");
    let router = Server::builder()
        .tls_config(tls)
        .context("the CA's TLS settings")?
        .add_service(service);
    let router = more(router, issuer);
    tokio::spawn(async move {
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            eprintln!("spar: ca: {e}");
        }
    });
    Ok(Some(addr))
}

/// One authenticator for the CSR API and the secure ADS port.
struct SharedAuth(Arc<dyn Authenticator>);

impl Authenticator for SharedAuth {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn authenticate(&self, caller: &Caller<'_>) -> Result<SpiffeId, AuthError> {
        self.0.authenticate(caller)
    }
}

/// Identity for proxies on the secure ADS port: the CA's authenticators decide who the
/// caller is; the control plane makes the key and signs it, as pilot-agent would locally.
struct CaIdentity {
    ca: Arc<Ca>,
    auth: Arc<dyn Authenticator>,
    ttl: Duration,
    extra_roots: Arc<spar_ca::bundle::ExtraRoots>,
}

impl WorkloadIdentity for CaIdentity {
    fn authenticate(
        &self,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> Result<String, Status> {
        let metadata = tonic::metadata::MetadataMap::from_headers(headers.clone());
        let peer = extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs);
        let caller = Caller {
            metadata: &metadata,
            peer_certs: peer.as_deref().map(Vec::as_slice),
        };
        self.auth
            .authenticate(&caller)
            .map(|id| id.to_string())
            .map_err(|e| Status::unauthenticated(format!("xDS on the secure port: {e}")))
    }

    fn issue(&self, identity: &str) -> Result<Issued, Status> {
        let id: SpiffeId = identity
            .parse()
            .map_err(|e| Status::internal(format!("{identity}: {e}")))?;
        let (csr, key_pem) = spar_ca::client::generate_csr(&id)
            .map_err(|e| Status::internal(format!("making a key for {identity}: {e}")))?;
        let chain = self
            .ca
            .sign_csr(&csr, &id, self.ttl)
            .map_err(|e| Status::internal(format!("signing for {identity}: {e}")))?;
        // The answer ends with the root, which SDS carries in `ROOTCA` instead.
        let certs = chain.pem.len().saturating_sub(1).max(1);
        Ok(Issued {
            chain_pem: chain.pem[..certs].concat(),
            key_pem,
            roots_pem: self.extra_roots.bundle(&self.ca.root_pem()),
            lifetime: self.ttl,
        })
    }

    fn trust_bundle(&self) -> Option<String> {
        Some(self.extra_roots.bundle(&self.ca.root_pem()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        ca: CaArgs,
    }

    #[test]
    fn flags_and_defaults() {
        let cli = Cli::parse_from(["t"]);
        assert!(!cli.ca.enabled());
        assert_eq!(cli.ca.ca_addr.port(), 15012);
        assert_eq!(cli.ca.trust_domain, "cluster.local");
        assert_eq!(cli.ca.workload_cert_ttl, Duration::from_secs(24 * 3600));
        let cli = Cli::parse_from(["t", "--ca-tokens", "/x", "--workload-cert-ttl", "5m"]);
        assert!(cli.ca.enabled());
        assert_eq!(cli.ca.workload_cert_ttl, Duration::from_secs(300));
        assert!(Cli::try_parse_from(["t", "--workload-cert-ttl", "0s"]).is_err());
    }

    #[tokio::test]
    async fn serves_on_a_free_port_with_a_persisted_root() {
        use spar_ca::client::{chain_der, generate_csr, CaClient};
        use spar_ca::{verify_svid, SpiffeId};

        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, "t0k default/reviews\n").unwrap();
        let cli = Cli::parse_from([
            "t",
            "--ca-addr",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--ca-tokens",
            tokens.to_str().unwrap(),
            "--workload-cert-ttl",
            "10m",
        ]);
        let ca_addr = start(&cli.ca, Arc::default(), |r, _| r)
            .await
            .unwrap()
            .unwrap();
        let root_pem = std::fs::read_to_string(dir.path().join("ca/root-cert.pem")).unwrap();
        assert!(dir.path().join("ca/ca-key.pem").exists());

        // A workload with its token gets a 10-minute SVID that chains to the persisted root.
        let me = SpiffeId::new("cluster.local", "default", "reviews").unwrap();
        let (csr, _key) = generate_csr(&me).unwrap();
        let addr = format!("https://{ca_addr}");
        let mut client = CaClient::connect(&addr, &root_pem, "istiod.istio-system.svc", None)
            .await
            .unwrap();
        let chain = client
            .create_certificate(csr, Duration::ZERO, Some("t0k"))
            .await
            .unwrap();
        let ders = chain_der(&chain).unwrap();
        let roots = chain_der(&[root_pem]).unwrap();
        let now = spar_ca::UnixTime::now();
        assert_eq!(
            verify_svid(&ders, &roots, "cluster.local", now).unwrap(),
            me
        );

        // The same root comes back on the next start.
        let a = load(&cli.ca).unwrap();
        assert_eq!(a.root(), &roots[0]);
    }
}
