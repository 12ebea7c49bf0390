//! `spar iptables`: install (or remove, or print) the capture rules that send a workload's
//! TCP through its sidecar, with istio-iptables' flags and defaults.

use std::process::ExitCode;

use anyhow::{bail, Context};
use spar_capture::{restore_text, CaptureConfig, Family, InboundPorts};

/// Redirect a workload's TCP to its sidecar with iptables (root, Linux), like
/// istio-iptables: outbound to --proxy-port, inbound to --inbound-port; the proxy's own
/// traffic (its uid/gid) passes. Installing replaces earlier Spar rules.
#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  spar iptables --dry-run                          print the iptables-restore input
  spar iptables --netns pod-1 -u 1337              install in a network namespace
  spar iptables --netns pod-1 -b 9080,9443 -x 10.96.0.0/12
  spar iptables --netns pod-1 --clean              remove them")]
pub struct Args {
    /// Outbound capture port.
    #[arg(short = 'p', long, default_value_t = 15001)]
    pub proxy_port: u16,

    /// Inbound capture port.
    #[arg(short = 'z', long, default_value_t = 15006)]
    pub inbound_port: u16,

    /// The uid(s) the proxy runs as (comma-separated); their traffic is not captured.
    #[arg(short = 'u', long, default_value = "1337")]
    pub proxy_uid: String,

    /// The gid(s) the proxy runs as (default: the same as --proxy-uid).
    #[arg(short = 'g', long)]
    pub proxy_gid: Option<String>,

    /// Inbound ports to capture: `*` for all, a comma-separated list, or empty for none.
    #[arg(short = 'b', long, default_value = "*")]
    pub inbound_ports: String,

    /// With `-b '*'`: inbound ports not to capture.
    #[arg(short = 'd', long, default_value = "15090,15021,15020")]
    pub exclude_inbound_ports: String,

    /// Outbound destination ports not to capture.
    #[arg(short = 'o', long, default_value = "")]
    pub exclude_outbound_ports: String,

    /// Outbound destination CIDRs not to capture (comma-separated; IPv4 and IPv6).
    #[arg(short = 'x', long, default_value = "")]
    pub exclude_outbound_cidrs: String,

    /// Also install IPv6 rules (ip6tables).
    #[arg(long)]
    pub ipv6: bool,

    /// Run inside this network namespace (`ip netns exec NAME`).
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,

    /// Print the rules (iptables-restore input) instead of installing them.
    #[arg(long, conflicts_with = "clean")]
    pub dry_run: bool,

    /// Remove Spar's rules instead of installing them.
    #[arg(long)]
    pub clean: bool,
}

fn list<T: std::str::FromStr>(flag: &str, text: &str) -> anyhow::Result<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<T>()
                .map_err(|e| anyhow::anyhow!("{flag}: {s:?} is not valid: {e}"))
        })
        .collect()
}

fn cidrs(text: &str) -> anyhow::Result<Vec<ipnet::IpNet>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .with_context(|| {
                    format!("--exclude-outbound-cidrs: {s:?} is neither a CIDR nor an address")
                })
        })
        .collect()
}

pub fn config(args: &Args) -> anyhow::Result<CaptureConfig> {
    let proxy_uids: Vec<u32> = list("--proxy-uid", &args.proxy_uid)?;
    let proxy_gids = match &args.proxy_gid {
        Some(g) => list("--proxy-gid", g)?,
        None => proxy_uids.clone(),
    };
    let inbound_ports = if args.inbound_ports.trim() == "*" {
        InboundPorts::All
    } else {
        InboundPorts::Ports(list("--inbound-ports", &args.inbound_ports)?)
    };
    if proxy_uids.is_empty() && proxy_gids.is_empty() {
        bail!("--proxy-uid or --proxy-gid must name the proxy, or its own traffic would loop back into it");
    }
    Ok(CaptureConfig {
        proxy_port: args.proxy_port,
        inbound_port: args.inbound_port,
        proxy_uids,
        proxy_gids,
        inbound_ports,
        exclude_inbound_ports: list("--exclude-inbound-ports", &args.exclude_inbound_ports)?,
        exclude_outbound_ports: list("--exclude-outbound-ports", &args.exclude_outbound_ports)?,
        exclude_outbound_cidrs: cidrs(&args.exclude_outbound_cidrs)?,
        ipv6: args.ipv6,
    })
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let cfg = config(args)?;
    let netns = args.netns.as_deref();
    if args.dry_run {
        print!("{}", restore_text(&cfg, Family::V4));
        if cfg.ipv6 {
            println!("# ip6tables-restore --noflush");
            print!("{}", restore_text(&cfg, Family::V6));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let place = netns.map_or("this namespace".to_string(), |n| {
        format!("network namespace {n}")
    });
    if args.clean {
        spar_capture::clean(&cfg, netns)?;
        eprintln!("spar: removed the capture rules in {place}");
    } else {
        spar_capture::apply(&cfg, netns)?;
        eprintln!(
            "spar: capturing in {place}: outbound TCP → :{}, inbound → :{} (proxy uid {:?}, gid {:?} excluded)",
            cfg.proxy_port, cfg.inbound_port, cfg.proxy_uids, cfg.proxy_gids
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> anyhow::Result<CaptureConfig> {
        let cli =
            Cli::try_parse_from(std::iter::once("spar-iptables").chain(argv.iter().copied()))?;
        config(&cli.args)
    }

    #[test]
    fn defaults_are_the_sidecar_injectors() {
        assert_eq!(parse(&[]).unwrap(), CaptureConfig::default());
    }

    #[test]
    fn istio_iptables_flags() {
        let cfg = parse(&[
            "-p",
            "15101",
            "-z",
            "15106",
            "-u",
            "1000,1001",
            "-g",
            "2000",
            "-b",
            "9080, 8443",
            "-d",
            "",
            "-o",
            "15010,15012",
            "-x",
            "10.96.0.0/12,10.0.0.1,fd00::/8",
            "--ipv6",
        ])
        .unwrap();
        assert_eq!(cfg.proxy_port, 15101);
        assert_eq!(cfg.inbound_port, 15106);
        assert_eq!(cfg.proxy_uids, [1000, 1001]);
        assert_eq!(cfg.proxy_gids, [2000]);
        assert_eq!(cfg.inbound_ports, InboundPorts::Ports(vec![9080, 8443]));
        assert!(cfg.exclude_inbound_ports.is_empty());
        assert_eq!(cfg.exclude_outbound_ports, [15010, 15012]);
        let cidrs: Vec<String> = cfg
            .exclude_outbound_cidrs
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(cidrs, ["10.96.0.0/12", "10.0.0.1/32", "fd00::/8"]);
        assert!(cfg.ipv6);
        assert_eq!(
            parse(&["-b", ""]).unwrap().inbound_ports,
            InboundPorts::Ports(vec![])
        );
    }

    #[test]
    fn bad_values_say_which_flag() {
        let err = parse(&["-o", "80,http"]).unwrap_err().to_string();
        assert!(
            err.contains("--exclude-outbound-ports") && err.contains("http"),
            "{err}"
        );
        let err = parse(&["-x", "10.0.0.0/33"]).unwrap_err().to_string();
        assert!(err.contains("--exclude-outbound-cidrs"), "{err}");
        assert!(parse(&["--dry-run", "--clean"]).is_err());
    }
}
