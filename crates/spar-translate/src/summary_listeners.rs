//! The listener and route parts of [`crate::summary`].

use std::fmt::Write;

use envoy_types::pb::envoy::config::core::v3::{address, socket_address, Address};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, route, route_action, route_match, Route, RouteMatch,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use prost::Message;

use crate::summary::{digest, digest_bytes, duration_text};
use crate::XdsResources;

fn addr(a: &Option<Address>) -> String {
    match a.as_ref().and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(s)) => {
            let port = match s.port_specifier {
                Some(socket_address::PortSpecifier::PortValue(p)) => p,
                _ => 0,
            };
            format!("{}:{port}", s.address)
        }
        _ => "-".to_string(),
    }
}

fn filter_text(f: &Filter) -> String {
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        return f.name.clone();
    };
    if let Ok(hcm) = HttpConnectionManager::decode(any.value.as_slice()) {
        if any.type_url.ends_with("HttpConnectionManager") {
            let filters: Vec<&str> = hcm.http_filters.iter().map(|h| h.name.as_str()).collect();
            let routes = match &hcm.route_specifier {
                Some(http_connection_manager::RouteSpecifier::Rds(r)) => {
                    format!("rds={}", r.route_config_name)
                }
                Some(http_connection_manager::RouteSpecifier::RouteConfig(rc)) => {
                    format!("inline_routes={}", rc.name)
                }
                _ => "-".to_string(),
            };
            return format!("http({routes} filters=[{}])", filters.join(","));
        }
    }
    if any.type_url.ends_with("TcpProxy") {
        if let Ok(tp) = TcpProxy::decode(any.value.as_slice()) {
            return match tp.cluster_specifier {
                Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => format!("tcp({c})"),
                Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w)) => {
                    let parts: Vec<String> = w
                        .clusters
                        .iter()
                        .map(|c| format!("{}={}", c.name, c.weight))
                        .collect();
                    format!("tcp([{}])", parts.join(", "))
                }
                None => "tcp(-)".to_string(),
            };
        }
    }
    f.name.clone()
}

pub(crate) fn listeners(out: &mut String, x: &XdsResources) {
    let _ = writeln!(out, "listeners:");
    for l in &x.listeners {
        let mut flags = Vec::new();
        if l.use_original_dst.as_ref().is_some_and(|b| b.value) {
            flags.push("use_original_dst".to_string());
        }
        if l.bind_to_port.as_ref().is_some_and(|b| !b.value) {
            flags.push("bind_to_port=false".to_string());
        }
        for lf in &l.listener_filters {
            flags.push(lf.name.clone());
        }
        let _ = writeln!(
            out,
            "  {}  {} {}  #{}",
            l.name,
            addr(&l.address),
            flags.join(" "),
            digest(l)
        );
        for c in &l.filter_chains {
            let mut m = String::new();
            if let Some(fcm) = &c.filter_chain_match {
                if let Some(p) = &fcm.destination_port {
                    let _ = write!(m, " port={}", p.value);
                }
                if !fcm.transport_protocol.is_empty() {
                    let _ = write!(m, " transport={}", fcm.transport_protocol);
                }
                if !fcm.application_protocols.is_empty() {
                    let _ = write!(m, " alpn=[{}]", fcm.application_protocols.join(","));
                }
                if !fcm.server_names.is_empty() {
                    let _ = write!(m, " sni=[{}]", fcm.server_names.join(","));
                }
            }
            if c.transport_socket.is_some() {
                m.push_str(" tls");
            }
            let filters: Vec<String> = c.filters.iter().map(filter_text).collect();
            let _ = writeln!(out, "    chain {}{m} -> {}", c.name, filters.join(" "));
        }
    }
}

fn sm(m: &StringMatcher) -> String {
    match &m.match_pattern {
        Some(string_matcher::MatchPattern::Exact(e)) => format!("=={e:?}"),
        Some(string_matcher::MatchPattern::Prefix(p)) => format!("^={p:?}"),
        Some(string_matcher::MatchPattern::Suffix(s)) => format!("$={s:?}"),
        Some(string_matcher::MatchPattern::SafeRegex(r)) => format!("~={:?}", r.regex),
        _ => "?".to_string(),
    }
}

fn match_text(m: &RouteMatch) -> String {
    let mut parts = Vec::new();
    match &m.path_specifier {
        Some(route_match::PathSpecifier::Prefix(p)) => parts.push(format!("prefix {p}")),
        Some(route_match::PathSpecifier::Path(p)) => parts.push(format!("path {p}")),
        Some(route_match::PathSpecifier::SafeRegex(r)) => parts.push(format!("regex {}", r.regex)),
        _ => {}
    }
    if m.case_sensitive.as_ref().is_some_and(|c| !c.value) {
        parts.push("ignore_case".to_string());
    }
    for h in &m.headers {
        let not = if h.invert_match { "!" } else { "" };
        let v = match &h.header_match_specifier {
            Some(header_matcher::HeaderMatchSpecifier::StringMatch(s)) => sm(s),
            Some(header_matcher::HeaderMatchSpecifier::PresentMatch(_)) => " present".to_string(),
            _ => "?".to_string(),
        };
        parts.push(format!("{not}header {}{v}", h.name));
    }
    for q in &m.query_parameters {
        parts.push(format!("query {}", q.name));
    }
    parts.join(" & ")
}

fn route_text(r: &Route) -> String {
    let m = r.r#match.as_ref().map(match_text).unwrap_or_default();
    let action = match &r.action {
        Some(route::Action::Route(a)) => {
            let mut s = match &a.cluster_specifier {
                Some(route_action::ClusterSpecifier::Cluster(c)) => format!("-> {c}"),
                Some(route_action::ClusterSpecifier::WeightedClusters(w)) => {
                    let parts: Vec<String> = w
                        .clusters
                        .iter()
                        .map(|c| format!("{}={}", c.name, c.weight.as_ref().map_or(0, |w| w.value)))
                        .collect();
                    format!("-> [{}]", parts.join(", "))
                }
                _ => "-> ?".to_string(),
            };
            let _ = write!(s, " timeout={}", duration_text(&a.timeout));
            if let Some(rp) = &a.retry_policy {
                let _ = write!(
                    s,
                    " retries={}({})",
                    rp.num_retries.as_ref().map_or(0, |n| n.value),
                    rp.retry_on
                );
            }
            if !a.prefix_rewrite.is_empty() {
                let _ = write!(s, " rewrite_prefix={}", a.prefix_rewrite);
            }
            if let Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(h)) =
                &a.host_rewrite_specifier
            {
                let _ = write!(s, " rewrite_authority={h}");
            }
            for mp in &a.request_mirror_policies {
                let _ = write!(s, " mirror={}", mp.cluster);
            }
            s
        }
        Some(route::Action::Redirect(rd)) => format!(
            "redirect host={} path={:?}",
            rd.host_redirect, rd.path_rewrite_specifier
        ),
        Some(route::Action::DirectResponse(d)) => format!("direct_response {}", d.status),
        _ => "?".to_string(),
    };
    let mut filters: Vec<&str> = r
        .typed_per_filter_config
        .keys()
        .map(String::as_str)
        .collect();
    filters.sort();
    let extra = if filters.is_empty() {
        String::new()
    } else {
        format!(" per_filter=[{}]", filters.join(","))
    };
    format!("{} [{m}] {action}{extra}", r.name)
}

pub(crate) fn routes(out: &mut String, x: &XdsResources) {
    let _ = writeln!(out, "routes:");
    for rc in &x.routes {
        let bytes = crate::canonical::route_configuration(prost::Message::encode_to_vec(rc));
        let _ = writeln!(out, "  {}  #{}", rc.name, digest_bytes(&bytes));
        for vh in &rc.virtual_hosts {
            let tls = if vh.require_tls != 0 {
                " require_tls"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    vhost {}{tls} domains=[{}]",
                vh.name,
                vh.domains.join(", ")
            );
            for r in &vh.routes {
                let _ = writeln!(out, "      route {}", route_text(r));
            }
        }
    }
}
