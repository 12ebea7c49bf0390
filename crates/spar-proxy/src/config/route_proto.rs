//! `RouteConfiguration` protos → the route types of [`super::route`]: the one place a route
//! can be refused, with the route configuration, virtual host and route named.

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValueOption, Metadata,
};
use envoy_types::pb::envoy::config::route::v3 as rpb;
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{fault_abort, HttpFault};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use super::matcher::{duration, full_regex, PerMillion, StringMatch};
use super::ConfigError;

use super::route::*;

type Ctx<'a> = &'a dyn Fn() -> String;

impl RouteConfig {
    pub fn from_proto(rc: &rpb::RouteConfiguration) -> Result<Self, ConfigError> {
        let what = |vh: &str| format!("route configuration {:?}: virtual host {vh:?}", rc.name);
        let virtual_hosts = rc
            .virtual_hosts
            .iter()
            .map(|vh| VirtualHost::from_proto(vh, &|| what(&vh.name)))
            .collect::<Result<_, _>>()?;
        Ok(RouteConfig {
            name: rc.name.clone(),
            virtual_hosts,
            ignore_port_in_host_matching: rc.ignore_port_in_host_matching,
        })
    }
}

impl VirtualHost {
    fn from_proto(vh: &rpb::VirtualHost, what: Ctx<'_>) -> Result<Self, ConfigError> {
        let routes = vh
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| Route::from_proto(r, &|| format!("{}: route {i} ({:?})", what(), r.name)))
            .collect::<Result<_, _>>()?;
        Ok(VirtualHost {
            name: vh.name.clone(),
            domains: vh.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            routes,
            require_tls: vh.require_tls != 0,
        })
    }
}

fn istio_config(m: Option<&Metadata>) -> Option<String> {
    use envoy_types::pb::google::protobuf::value::Kind;
    let s = m?.filter_metadata.get("istio")?.fields.get("config")?;
    match &s.kind {
        Some(Kind::StringValue(v)) => Some(v.clone()),
        _ => None,
    }
}

fn decode<M: Message + Default>(any: &Any, what: Ctx<'_>) -> Result<M, ConfigError> {
    M::decode(any.value.as_slice()).map_err(|e| ConfigError::Invalid {
        what: what(),
        why: format!("{} does not decode: {e}", any.type_url),
    })
}

impl Route {
    fn from_proto(r: &rpb::Route, what: Ctx<'_>) -> Result<Self, ConfigError> {
        let matcher = RouteMatch::from_proto(r.r#match.as_ref(), what)?;
        let action = match &r.action {
            Some(rpb::route::Action::Route(a)) => Action::Forward(Arc::new(forward(a, what)?)),
            Some(rpb::route::Action::Redirect(rd)) => Action::Redirect(redirect(rd)),
            Some(rpb::route::Action::DirectResponse(d)) => Action::Direct {
                status: u16::try_from(d.status).unwrap_or(500),
                body: d
                    .body
                    .as_ref()
                    .map(|b| data_source(b, what))
                    .transpose()?
                    .unwrap_or_default(),
            },
            Some(rpb::route::Action::FilterAction(_))
            | Some(rpb::route::Action::NonForwardingAction(_))
            | None => {
                return Err(ConfigError::Unsupported {
                    what: what(),
                    feature: "a route without a route, redirect or direct_response action".into(),
                })
            }
        };
        let mut fault = None;
        let mut cors = None;
        for (name, any) in &r.typed_per_filter_config {
            match name.as_str() {
                FAULT_FILTER => fault = Some(fault_config(&decode::<HttpFault>(any, what)?)),
                CORS_FILTER => cors = Some(cors_config(&decode::<CorsPolicy>(any, what)?, what)?),
                other => {
                    return Err(ConfigError::Unsupported {
                        what: what(),
                        feature: format!("per-route config for http filter {other:?}"),
                    })
                }
            }
        }
        Ok(Route {
            name: r.name.clone(),
            matcher,
            action,
            istio_config: istio_config(r.metadata.as_ref()),
            headers: header_ops(
                &r.request_headers_to_add,
                &r.request_headers_to_remove,
                &r.response_headers_to_add,
                &r.response_headers_to_remove,
                what,
            )?,
            fault,
            cors,
        })
    }
}

impl RouteMatch {
    pub(crate) fn from_proto(
        m: Option<&rpb::RouteMatch>,
        what: Ctx<'_>,
    ) -> Result<Self, ConfigError> {
        use rpb::route_match::PathSpecifier as P;
        let Some(m) = m else {
            return Err(ConfigError::Invalid {
                what: what(),
                why: "route has no match".into(),
            });
        };
        let path = match &m.path_specifier {
            Some(P::Prefix(p)) => PathMatch::Prefix(p.clone()),
            Some(P::Path(p)) => PathMatch::Exact(p.clone()),
            Some(P::SafeRegex(r)) => PathMatch::Regex(full_regex(&r.regex, what)?),
            Some(P::PathSeparatedPrefix(p)) => PathMatch::SeparatedPrefix(p.clone()),
            Some(other) => {
                return Err(ConfigError::Unsupported {
                    what: what(),
                    feature: format!("path matcher {other:?}"),
                })
            }
            None => PathMatch::Prefix("/".into()),
        };
        let case_sensitive = m.case_sensitive.as_ref().is_none_or(|b| b.value);
        let path = if case_sensitive {
            path
        } else {
            match path {
                PathMatch::Prefix(p) => PathMatch::Prefix(p.to_ascii_lowercase()),
                PathMatch::Exact(p) => PathMatch::Exact(p.to_ascii_lowercase()),
                PathMatch::SeparatedPrefix(p) => PathMatch::SeparatedPrefix(p.to_ascii_lowercase()),
                re => re,
            }
        };
        let headers = m
            .headers
            .iter()
            .map(|h| header_matcher(h, what))
            .collect::<Result<_, _>>()?;
        let query = m
            .query_parameters
            .iter()
            .map(|q| {
                use rpb::query_parameter_matcher::QueryParameterMatchSpecifier as Q;
                Ok(QueryMatcher {
                    name: q.name.clone(),
                    matcher: match &q.query_parameter_match_specifier {
                        Some(Q::StringMatch(s)) => Some(StringMatch::from_proto(s, what)?),
                        Some(Q::PresentMatch(_)) | None => None,
                    },
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        let runtime_fraction = m
            .runtime_fraction
            .as_ref()
            .and_then(|r| r.default_value.as_ref())
            .map(PerMillion::from_proto);
        Ok(RouteMatch {
            path,
            case_sensitive,
            headers,
            query,
            runtime_fraction,
        })
    }
}

#[allow(deprecated)] // the deprecated matchers still arrive from older control planes
pub(crate) fn header_matcher(
    h: &rpb::HeaderMatcher,
    what: Ctx<'_>,
) -> Result<HeaderMatcher, ConfigError> {
    use envoy_types::pb::envoy::r#type::matcher::v3::{
        string_matcher::MatchPattern as MP, StringMatcher,
    };
    use rpb::header_matcher::HeaderMatchSpecifier as H;
    let s = |p: MP| {
        StringMatch::from_proto(
            &StringMatcher {
                match_pattern: Some(p),
                ignore_case: false,
            },
            what,
        )
        .map(HeaderMatch::String)
    };
    let matcher = match &h.header_match_specifier {
        Some(H::StringMatch(m)) => HeaderMatch::String(StringMatch::from_proto(m, what)?),
        Some(H::PresentMatch(p)) => HeaderMatch::Present(*p),
        Some(H::ExactMatch(v)) => s(MP::Exact(v.clone()))?,
        Some(H::PrefixMatch(v)) => s(MP::Prefix(v.clone()))?,
        Some(H::SuffixMatch(v)) => s(MP::Suffix(v.clone()))?,
        Some(H::ContainsMatch(v)) => s(MP::Contains(v.clone()))?,
        Some(H::SafeRegexMatch(r)) => s(MP::SafeRegex(r.clone()))?,
        Some(H::RangeMatch(r)) => HeaderMatch::Range(r.start, r.end),
        // Envoy: no specifier means "present".
        None => HeaderMatch::Present(true),
    };
    Ok(HeaderMatcher {
        name: h.name.to_ascii_lowercase(),
        matcher,
        invert: h.invert_match,
        treat_missing_as_empty: h.treat_missing_header_as_empty,
    })
}

fn data_source(
    d: &envoy_types::pb::envoy::config::core::v3::DataSource,
    what: Ctx<'_>,
) -> Result<bytes::Bytes, ConfigError> {
    use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
    match &d.specifier {
        Some(Specifier::InlineString(s)) => Ok(bytes::Bytes::from(s.clone())),
        Some(Specifier::InlineBytes(b)) => Ok(bytes::Bytes::from(b.clone())),
        Some(Specifier::Filename(f)) => {
            std::fs::read(f)
                .map(bytes::Bytes::from)
                .map_err(|e| ConfigError::Invalid {
                    what: what(),
                    why: format!("direct response body file {f:?} cannot be read: {e}"),
                })
        }
        Some(Specifier::EnvironmentVariable(v)) => {
            Ok(bytes::Bytes::from(std::env::var(v).unwrap_or_default()))
        }
        None => Ok(bytes::Bytes::new()),
    }
}

pub fn header_ops(
    req_add: &[HeaderValueOption],
    req_rm: &[String],
    resp_add: &[HeaderValueOption],
    resp_rm: &[String],
    what: Ctx<'_>,
) -> Result<HeaderOps, ConfigError> {
    let names = |v: &[String]| -> Result<Vec<String>, ConfigError> {
        v.iter()
            .map(|n| {
                http::HeaderName::from_bytes(n.as_bytes())
                    .map(|h| h.as_str().to_string())
                    .map_err(|_| ConfigError::Invalid {
                        what: what(),
                        why: format!("header name {n:?} is not valid"),
                    })
            })
            .collect()
    };
    Ok(HeaderOps {
        request_add: header_adds(req_add, what)?,
        request_remove: names(req_rm)?,
        response_add: header_adds(resp_add, what)?,
        response_remove: names(resp_rm)?,
    })
}

#[allow(deprecated)] // `append` still arrives from older control planes
fn header_adds(v: &[HeaderValueOption], what: Ctx<'_>) -> Result<Vec<HeaderAdd>, ConfigError> {
    v.iter()
        .filter_map(|o| o.header.as_ref().map(|h| (o, h)))
        .map(|(o, h)| {
            let bad = |why: String| ConfigError::Invalid { what: what(), why };
            let name = http::HeaderName::from_bytes(h.key.as_bytes())
                .map_err(|_| bad(format!("header name {:?} is not valid", h.key)))?;
            let value = http::HeaderValue::from_str(&h.value)
                .map_err(|_| bad(format!("header {:?} has an invalid value", h.key)))?;
            let action = HeaderAppendAction::try_from(o.append_action)
                .unwrap_or(HeaderAppendAction::AppendIfExistsOrAdd);
            // The deprecated `append` wrapper wins when set, as in Envoy.
            let append = match &o.append {
                Some(b) => b.value,
                None => action == HeaderAppendAction::AppendIfExistsOrAdd,
            };
            Ok(HeaderAdd {
                name,
                value,
                append,
                if_absent: action == HeaderAppendAction::AddIfAbsent,
            })
        })
        .collect()
}

fn forward(a: &rpb::RouteAction, what: Ctx<'_>) -> Result<Forward, ConfigError> {
    use rpb::route_action::{ClusterSpecifier as C, HostRewriteSpecifier as H};
    let target = match &a.cluster_specifier {
        Some(C::Cluster(c)) => Target::Cluster(c.clone()),
        Some(C::ClusterHeader(h)) => {
            Target::Header(http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                ConfigError::Invalid {
                    what: what(),
                    why: format!("cluster_header {h:?} is not a header name"),
                }
            })?)
        }
        Some(C::WeightedClusters(w)) => Target::Weighted(
            w.clusters
                .iter()
                .map(|c| {
                    Ok(WeightedTarget {
                        cluster: c.name.clone(),
                        weight: c.weight.as_ref().map_or(0, |w| w.value),
                        headers: header_ops(
                            &c.request_headers_to_add,
                            &c.request_headers_to_remove,
                            &c.response_headers_to_add,
                            &c.response_headers_to_remove,
                            what,
                        )?,
                    })
                })
                .collect::<Result<_, ConfigError>>()?,
        ),
        other => {
            return Err(ConfigError::Unsupported {
                what: what(),
                feature: format!("cluster specifier {other:?}"),
            })
        }
    };
    let timeout = match &a.timeout {
        None => Some(Duration::from_secs(15)),
        Some(d) => duration(d).filter(|d| !d.is_zero()),
    };
    let host_rewrite = match &a.host_rewrite_specifier {
        Some(H::HostRewriteLiteral(h)) => Some(h.clone()),
        Some(other) => {
            return Err(ConfigError::Unsupported {
                what: what(),
                feature: format!("host rewrite {other:?}"),
            })
        }
        None => None,
    };
    let regex_rewrite = a
        .regex_rewrite
        .as_ref()
        .map(|r| {
            let pattern = r.pattern.as_ref().map(|p| p.regex.as_str()).unwrap_or("");
            regex::Regex::new(pattern)
                .map(|re| (re, envoy_substitution(&r.substitution)))
                .map_err(|e| ConfigError::Invalid {
                    what: what(),
                    why: format!("regex_rewrite {pattern:?} does not compile: {e}"),
                })
        })
        .transpose()?;
    Ok(Forward {
        target,
        timeout,
        retry: a.retry_policy.as_ref().map(retry_policy),
        prefix_rewrite: (!a.prefix_rewrite.is_empty()).then(|| a.prefix_rewrite.clone()),
        regex_rewrite,
        host_rewrite,
        mirrors: a
            .request_mirror_policies
            .iter()
            .map(|m| Mirror {
                cluster: m.cluster.clone(),
                fraction: m
                    .runtime_fraction
                    .as_ref()
                    .and_then(|r| r.default_value.as_ref())
                    .map_or(PerMillion::ALL, PerMillion::from_proto),
            })
            .collect(),
        hash_policy: a.hash_policy.iter().filter_map(hash_policy).collect(),
    })
}

/// RE2 substitutions write groups as `\1`; the regex crate as `${1}`.
fn envoy_substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    out.push_str(&format!("${{{d}}}"));
                    chars.next();
                }
                Some('\\') => {
                    out.push('\\');
                    chars.next();
                }
                _ => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

fn hash_policy(h: &rpb::route_action::HashPolicy) -> Option<HashPolicy> {
    use rpb::route_action::hash_policy::PolicySpecifier as P;
    let terminal = h.terminal;
    Some(match h.policy_specifier.as_ref()? {
        P::Header(x) => HashPolicy::Header {
            name: x.header_name.to_ascii_lowercase(),
            terminal,
        },
        P::Cookie(c) => HashPolicy::Cookie {
            name: c.name.clone(),
            terminal,
        },
        P::ConnectionProperties(c) if c.source_ip => HashPolicy::SourceIp { terminal },
        P::QueryParameter(q) => HashPolicy::Query {
            name: q.name.clone(),
            terminal,
        },
        _ => return None,
    })
}

fn retry_policy(r: &rpb::RetryPolicy) -> RetryPolicy {
    let mut on = RetryOn::default();
    for part in r.retry_on.split(',').map(str::trim) {
        match part {
            "5xx" => on.five_xx = true,
            "gateway-error" => on.gateway_error = true,
            "connect-failure" => on.connect_failure = true,
            "reset" => on.reset = true,
            "refused-stream" => on.refused_stream = true,
            "retriable-status-codes" => on.retriable_status_codes = true,
            "retriable-4xx" => on.retriable_4xx = true,
            "cancelled" => on.grpc.push(1),
            "deadline-exceeded" => on.grpc.push(4),
            "resource-exhausted" => on.grpc.push(8),
            "internal" => on.grpc.push(13),
            "unavailable" => on.grpc.push(14),
            _ => {}
        }
    }
    let base = r
        .retry_back_off
        .as_ref()
        .and_then(|b| b.base_interval.as_ref())
        .and_then(duration)
        .unwrap_or(Duration::from_millis(25));
    let max = r
        .retry_back_off
        .as_ref()
        .and_then(|b| b.max_interval.as_ref())
        .and_then(duration)
        .unwrap_or(base * 10);
    RetryPolicy {
        on,
        num_retries: r.num_retries.as_ref().map_or(1, |n| n.value),
        per_try_timeout: r
            .per_try_timeout
            .as_ref()
            .and_then(duration)
            .filter(|d| !d.is_zero()),
        status_codes: r
            .retriable_status_codes
            .iter()
            .filter_map(|c| u16::try_from(*c).ok())
            .collect(),
        base_interval: base,
        max_interval: max,
    }
}

fn redirect(rd: &rpb::RedirectAction) -> Redirect {
    use rpb::redirect_action::{
        PathRewriteSpecifier as P, RedirectResponseCode as C, SchemeRewriteSpecifier as S,
    };
    let (scheme, https) = match &rd.scheme_rewrite_specifier {
        Some(S::HttpsRedirect(true)) => (None, true),
        Some(S::SchemeRedirect(s)) => (Some(s.clone()), false),
        _ => (None, false),
    };
    let status = match C::try_from(rd.response_code) {
        Ok(C::Found) => 302,
        Ok(C::SeeOther) => 303,
        Ok(C::TemporaryRedirect) => 307,
        Ok(C::PermanentRedirect) => 308,
        _ => 301,
    };
    Redirect {
        scheme,
        host: (!rd.host_redirect.is_empty()).then(|| rd.host_redirect.clone()),
        port: (rd.port_redirect != 0).then_some(rd.port_redirect),
        path: match &rd.path_rewrite_specifier {
            Some(P::PathRedirect(p)) => Some(p.clone()),
            _ => None,
        },
        prefix_rewrite: match &rd.path_rewrite_specifier {
            Some(P::PrefixRewrite(p)) => Some(p.clone()),
            _ => None,
        },
        strip_query: rd.strip_query,
        https,
        status,
    }
}

fn fault_config(f: &HttpFault) -> Fault {
    use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
    let pct = |p: Option<&envoy_types::pb::envoy::r#type::v3::FractionalPercent>| {
        p.map_or(PerMillion::ALL, PerMillion::from_proto)
    };
    Fault {
        delay: f
            .delay
            .as_ref()
            .and_then(|d| match &d.fault_delay_secifier {
                Some(FaultDelaySecifier::FixedDelay(x)) => {
                    Some((duration(x)?, pct(d.percentage.as_ref())))
                }
                _ => None,
            }),
        abort: f.abort.as_ref().and_then(|a| {
            let kind = match a.error_type.as_ref()? {
                fault_abort::ErrorType::HttpStatus(s) => Abort::Http(u16::try_from(*s).ok()?),
                fault_abort::ErrorType::GrpcStatus(s) => Abort::Grpc(*s),
                fault_abort::ErrorType::HeaderAbort(_) => return None,
            };
            Some((kind, pct(a.percentage.as_ref())))
        }),
    }
}

fn cors_config(c: &CorsPolicy, what: Ctx<'_>) -> Result<Cors, ConfigError> {
    Ok(Cors {
        origins: c
            .allow_origin_string_match
            .iter()
            .map(|m| StringMatch::from_proto(m, what))
            .collect::<Result<_, _>>()?,
        methods: c.allow_methods.clone(),
        headers: c.allow_headers.clone(),
        expose: c.expose_headers.clone(),
        max_age: c.max_age.clone(),
        credentials: c.allow_credentials.as_ref().is_some_and(|b| b.value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutions_use_rust_syntax() {
        assert_eq!(envoy_substitution(r"/v2/\1"), "/v2/${1}");
        assert_eq!(envoy_substitution("a$b"), "a$$b");
    }
}
