//! The capture rules, as `istio-iptables` lays them out for a sidecar, as a pure function
//! of the configuration.
//!
//! `nat` table. Inbound: `PREROUTING` → `ISTIO_INBOUND` (excluded ports RETURN, then the
//! captured ports jump to `ISTIO_IN_REDIRECT` → REDIRECT to the inbound port). Outbound:
//! `OUTPUT` → `ISTIO_OUTPUT`, which RETURNs the proxy's inbound passthrough traffic (source
//! 127.0.0.6), excluded ports, the proxy's own traffic (uid/gid owner) except what it sends
//! over loopback to the pod's own address (that is inbound again), other loopback traffic,
//! 127.0.0.1 and excluded CIDRs; everything else jumps to `ISTIO_REDIRECT` → REDIRECT to the
//! outbound port.

use ipnet::IpNet;

/// The chains Spar creates (and [`crate::clean`] removes).
pub const CHAINS: [&str; 4] = [
    "ISTIO_INBOUND",
    "ISTIO_REDIRECT",
    "ISTIO_IN_REDIRECT",
    "ISTIO_OUTPUT",
];

/// Which inbound ports are captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundPorts {
    /// Every port (`*`) except `exclude_inbound_ports`.
    All,
    /// Only these ports; empty means no inbound capture.
    Ports(Vec<u16>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.1/32",
            Family::V6 => "::1/128",
        }
    }

    /// The source address the proxy uses to reach the workload on inbound passthrough.
    fn inbound_passthrough(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.6/32",
            Family::V6 => "::6/128",
        }
    }
}

/// What to capture; the defaults are istio-iptables' as the sidecar injector sets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Outbound capture port (`-p`).
    pub proxy_port: u16,
    /// Inbound capture port (`-z`).
    pub inbound_port: u16,
    /// The proxy runs as these uids (`-u`); their traffic is not captured.
    pub proxy_uids: Vec<u32>,
    /// ... and these gids (`-g`).
    pub proxy_gids: Vec<u32>,
    /// `-b`.
    pub inbound_ports: InboundPorts,
    /// `-d`: with `InboundPorts::All`, these are not captured.
    pub exclude_inbound_ports: Vec<u16>,
    /// `-o`.
    pub exclude_outbound_ports: Vec<u16>,
    /// `-x`: destinations never captured (the family's ones go into each family's rules).
    pub exclude_outbound_cidrs: Vec<IpNet>,
    /// Also install IPv6 rules (ip6tables).
    pub ipv6: bool,
}

impl Default for CaptureConfig {
    fn default() -> CaptureConfig {
        CaptureConfig {
            proxy_port: 15001,
            inbound_port: 15006,
            proxy_uids: vec![1337],
            proxy_gids: vec![1337],
            inbound_ports: InboundPorts::All,
            exclude_inbound_ports: vec![15090, 15021, 15020],
            exclude_outbound_ports: Vec::new(),
            exclude_outbound_cidrs: Vec::new(),
            ipv6: false,
        }
    }
}

impl CaptureConfig {
    fn captures_inbound(&self) -> bool {
        self.inbound_ports != InboundPorts::Ports(Vec::new())
    }
}

/// The IPv4 rules, one `iptables -t nat` argument list each (`-N` chain, `-A` rule).
pub fn rules(cfg: &CaptureConfig) -> Vec<Vec<String>> {
    rules_for(cfg, Family::V4)
}

/// The rules of one family.
pub fn rules_for(cfg: &CaptureConfig, family: Family) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut add = |s: String| out.push(s.split_whitespace().map(str::to_string).collect());
    for c in CHAINS {
        add(format!("-N {c}"));
    }
    add(format!(
        "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {}",
        cfg.proxy_port
    ));
    add(format!(
        "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {}",
        cfg.inbound_port
    ));

    if cfg.captures_inbound() {
        add("-A PREROUTING -p tcp -j ISTIO_INBOUND".to_string());
        match &cfg.inbound_ports {
            InboundPorts::All => {
                for p in &cfg.exclude_inbound_ports {
                    add(format!("-A ISTIO_INBOUND -p tcp --dport {p} -j RETURN"));
                }
                add("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT".to_string());
            }
            InboundPorts::Ports(ports) => {
                for p in ports {
                    add(format!(
                        "-A ISTIO_INBOUND -p tcp --dport {p} -j ISTIO_IN_REDIRECT"
                    ));
                }
            }
        }
    }

    add("-A OUTPUT -p tcp -j ISTIO_OUTPUT".to_string());
    add(format!(
        "-A ISTIO_OUTPUT -o lo -s {} -j RETURN",
        family.inbound_passthrough()
    ));
    for p in &cfg.exclude_outbound_ports {
        add(format!("-A ISTIO_OUTPUT -p tcp --dport {p} -j RETURN"));
    }
    let lo = family.loopback();
    let owners = cfg
        .proxy_uids
        .iter()
        .map(|u| ("--uid-owner", u))
        .chain(cfg.proxy_gids.iter().map(|g| ("--gid-owner", g)));
    for (flag, id) in owners {
        if cfg.captures_inbound() {
            // The proxy calling the pod's own address over loopback: that is inbound
            // traffic for this pod, captured again by the inbound port.
            add(format!(
                "-A ISTIO_OUTPUT -o lo ! -d {lo} -m owner {flag} {id} -j ISTIO_IN_REDIRECT"
            ));
        }
        // The application talking to itself over loopback is not captured ...
        add(format!(
            "-A ISTIO_OUTPUT -o lo -m owner ! {flag} {id} -j RETURN"
        ));
        // ... nor is anything the proxy sends.
        add(format!("-A ISTIO_OUTPUT -m owner {flag} {id} -j RETURN"));
    }
    add(format!("-A ISTIO_OUTPUT -d {lo} -j RETURN"));
    for net in &cfg.exclude_outbound_cidrs {
        let same = matches!(
            (net, family),
            (IpNet::V4(_), Family::V4) | (IpNet::V6(_), Family::V6)
        );
        if same {
            add(format!("-A ISTIO_OUTPUT -d {net} -j RETURN"));
        }
    }
    add("-A ISTIO_OUTPUT -j ISTIO_REDIRECT".to_string());
    out
}

/// The rules as `iptables-restore --noflush` input.
pub fn restore_text(cfg: &CaptureConfig, family: Family) -> String {
    let mut s = String::from("*nat\n");
    for r in rules_for(cfg, family) {
        s.push_str(&r.join(" "));
        s.push('\n');
    }
    s.push_str("COMMIT\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typical_sidecar() {
        let cfg = CaptureConfig {
            exclude_outbound_ports: vec![15010],
            exclude_outbound_cidrs: vec![
                "10.96.0.1/32".parse().expect("cidr"),
                "fd00::/8".parse().expect("cidr"),
            ],
            ..CaptureConfig::default()
        };
        let want = "\
*nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A OUTPUT -p tcp -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -p tcp --dport 15010 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -d 10.96.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
COMMIT
";
        assert_eq!(restore_text(&cfg, Family::V4), want);
        let v6 = restore_text(&cfg, Family::V6);
        assert!(v6.contains("-A ISTIO_OUTPUT -o lo -s ::6/128 -j RETURN\n"));
        assert!(v6.contains("-A ISTIO_OUTPUT -d fd00::/8 -j RETURN\n"));
        assert!(!v6.contains("10.96.0.1"));
    }

    #[test]
    fn named_inbound_ports_and_no_inbound_capture() {
        let cfg = CaptureConfig {
            inbound_ports: InboundPorts::Ports(vec![9080, 8443]),
            proxy_gids: Vec::new(),
            ..CaptureConfig::default()
        };
        let text = restore_text(&cfg, Family::V4);
        assert!(text.contains("-A ISTIO_INBOUND -p tcp --dport 9080 -j ISTIO_IN_REDIRECT\n"));
        assert!(text.contains("-A ISTIO_INBOUND -p tcp --dport 8443 -j ISTIO_IN_REDIRECT\n"));
        assert!(
            !text.contains("--dport 15090"),
            "exclusions only apply to `*`"
        );
        assert!(!text.contains("--gid-owner"));

        let none = CaptureConfig {
            inbound_ports: InboundPorts::Ports(Vec::new()),
            ..CaptureConfig::default()
        };
        let r = rules(&none);
        assert!(!r.iter().any(|a| a.contains(&"PREROUTING".to_string())));
        assert!(!r
            .iter()
            .any(|a| a.join(" ").contains("-j ISTIO_IN_REDIRECT")));
        assert_eq!(
            r.last().expect("rules"),
            &["-A", "ISTIO_OUTPUT", "-j", "ISTIO_REDIRECT"]
        );
    }
}
