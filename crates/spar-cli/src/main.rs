//! `spar`: a service mesh that speaks Istio's API.
//!
//! This binary is the only place that uses `anyhow`; every library crate has its own
//! typed errors. Exit codes: 0 success, 1 the input is invalid (or analysis found an
//! error), 2 the command itself could not run (bad flags, unreadable files).

mod allocator;
mod cmd;
mod logging;
mod output;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Spar reads the Istio YAML you already run (VirtualService, DestinationRule, Gateway,
/// ServiceEntry, Sidecar, PeerAuthentication, AuthorizationPolicy, RequestAuthentication,
/// Telemetry, ...) and checks it the way Istio's validating webhook and `istioctl analyze` do.
#[derive(Parser)]
#[command(name = "spar", version, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "\
Examples:
  spar validate samples/bookinfo/networking/        check every YAML/JSON file under a directory
  kubectl get vs -A -o yaml | spar validate -       check what a cluster holds (reads a List)
  spar analyze examples/bookinfo/                   find problems across resources (IST0101, ...)
  spar analyze -o json config/ | jq .               machine-readable findings
  spar control-plane --config-dir config/           serve it to proxies over xDS (ADS on :15010)
  spar ctl proxy-status                             which proxies accepted what
  spar ctl proxy-config app-1.default clusters      what that proxy was sent
  spar ctl diff --config-dir cfg/ --new next/       what applying next/ would change, per proxy
  spar bootstrap envoy --node-id app-1.default      an Envoy bootstrap pointing at the control plane
  spar iptables --netns pod-1                       capture a namespace's TCP for its sidecar (root)

Exit codes: 0 valid, 1 invalid input or analysis errors, 2 the command could not run.";

#[derive(Subcommand)]
enum Command {
    Validate(cmd::validate::Args),
    Analyze(cmd::analyze::Args),
    ControlPlane(cmd::control_plane::Args),
    Ctl(cmd::ctl::Args),
    Bootstrap(cmd::bootstrap::Args),
    Iptables(cmd::iptables::Args),
    Proxy(cmd::proxy::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; RUST_LOG narrows or widens them (default: info).
    logging::init();
    let result = match cli.command {
        Command::Validate(args) => cmd::validate::run(&args),
        Command::Analyze(args) => cmd::analyze::run(&args),
        Command::ControlPlane(args) => cmd::control_plane::run(&args),
        Command::Ctl(args) => cmd::ctl::run(&args),
        Command::Bootstrap(args) => cmd::bootstrap::run(&args),
        Command::Iptables(args) => cmd::iptables::run(&args),
        Command::Proxy(args) => cmd::proxy::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("spar: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
