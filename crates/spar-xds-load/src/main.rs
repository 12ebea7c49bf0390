//! `spar-xds-load`: a bench tool, not a test. It connects N simulated Envoy sidecars to an
//! xDS control plane over ADS (state of the world, or delta with `--delta`), subscribes
//! the way Envoy does, ACKs every response and times:
//!
//! - `full`: from the first connection until every proxy holds and has ACKed its whole
//!   config (CDS, EDS for each EDS cluster, LDS, RDS for each route name);
//! - `watch`: after the full phase, endpoint changes announced on standard input, from the
//!   moment the bench wrote them to disk until every affected proxy ACKed an assignment
//!   carrying the new address.
//!
//! Results are JSON on standard output. `bench/control-plane.sh` drives it.

mod collect;
mod delta;
mod grpc;
mod names;
mod proxy;
mod scan;
mod sotw;
mod thp;
mod wire;

// 2,000 simulated proxies decode ~3 GB of responses in small pieces; with glibc's
// allocator, malloc and free were 40% of this tool's time (and of the two cores the control
// plane under test shares with it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::sync::{mpsc, watch};

use crate::proxy::{Identity, ProxyError, Shared};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// Time the first full config to every proxy, print it, exit.
    Full,
    /// The full phase, then endpoint changes read from standard input (see `--help`).
    Watch,
}

/// Simulate N Envoy sidecars on ADS and time config pushes.
///
/// Watch mode reads lines on standard input: `expect ID CLUSTER IP` (an assignment of
/// CLUSTER will soon carry IP; answered `armed ID AFFECTED` once every proxy said whether it
/// subscribes to CLUSTER), then `wrote ID UNIX_NANOS` (the change reached the disk then;
/// answered `converged {json}` when every affected proxy ACKed it, or at the timeout).
/// At end of input it prints `summary {json}`.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The control plane's xDS address (plaintext gRPC).
    #[arg(long, default_value = "127.0.0.1:15010")]
    xds_addr: String,
    /// How many sidecars to simulate.
    #[arg(long, default_value_t = 2000)]
    proxies: usize,
    /// How many workloads they belong to (labels `app: PREFIX0000`, `PREFIX0001`, ...).
    #[arg(long, default_value_t = 20)]
    workloads: usize,
    #[arg(long, default_value = "svc-")]
    workload_prefix: String,
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Speak delta (incremental) ADS instead of state of the world.
    #[arg(long)]
    delta: bool,
    #[arg(long, value_enum, default_value = "full")]
    mode: Mode,
    /// Connections being set up at once (a real fleet reconnects in a storm too, but an
    /// unbounded storm overflows the listen backlog and measures SYN retries).
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Give up on the full phase after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Give up on one change after this many seconds.
    #[arg(long, default_value_t = 10)]
    change_timeout: u64,
}

fn main() -> ExitCode {
    thp::disable();
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("spar-xds-load: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("spar-xds-load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Connects one proxy's own HTTP/2 connection (Envoy opens one per ADS cluster).
pub(crate) async fn connect(
    shared: &Shared,
) -> Result<h2::client::SendRequest<bytes::Bytes>, ProxyError> {
    let _permit = shared.connect_gate.acquire().await;
    let err = |source: std::io::Error| ProxyError::Connect {
        addr: shared.addr.clone(),
        source,
    };
    let connect = async {
        let stream = tokio::net::TcpStream::connect(&shared.addr).await?;
        stream.set_nodelay(true)?;
        // Reads of 64 KB: HTTP/2's own reads are a frame (16 KB) at a time, and the recv
        // calls for a full push's 3 GB were most of this tool's kernel time. Not more: the
        // buffer is faulted in page by page for each of 2,000 connections (256 KB made half
        // of this tool's page faults and 760 MB of RSS).
        let io = tokio::io::BufReader::with_capacity(64 << 10, stream);
        grpc::handshake(io).await.map_err(std::io::Error::other)
    };
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| err(std::io::ErrorKind::TimedOut.into()))?
        .map_err(err)
}

async fn run(args: Args) -> Result<bool, collect::CollectError> {
    let (events_tx, events) = mpsc::unbounded_channel();
    let (target_tx, target_rx) = watch::channel(None);
    let shared = Arc::new(Shared::new(
        args.xds_addr.clone(),
        events_tx,
        target_rx,
        args.connect_concurrency,
    ));
    let started = std::time::Instant::now();
    for index in 0..args.proxies {
        let id = Identity {
            index,
            workload: format!(
                "{}{:04}",
                args.workload_prefix,
                index % args.workloads.max(1)
            ),
            namespace: args.namespace.clone(),
        };
        let shared = shared.clone();
        let delta = args.delta;
        tokio::spawn(async move {
            let result = if delta {
                delta::run(shared.clone(), id).await
            } else {
                sotw::run(shared.clone(), id).await
            };
            if let Err(e) = result {
                let _ = shared.events.send(proxy::Event::Failed {
                    proxy: index,
                    error: e.to_string(),
                });
            }
        });
    }
    let convergence = shared.convergence.clone();
    drop(shared);
    let mut c = collect::Collector::new(events, convergence, args.proxies, args.delta);
    let full = c.full(started, Duration::from_secs(args.timeout)).await;
    let ok = full["complete"] == args.proxies;
    if args.mode == Mode::Full {
        println!("{full}");
        return Ok(ok);
    }
    println!("ready {full}");
    c.watch(target_tx, Duration::from_secs(args.change_timeout))
        .await?;
    Ok(ok)
}
