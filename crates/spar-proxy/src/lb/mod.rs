//! Load balancing: one [`ClusterLb`] per cluster per snapshot, holding its hosts (with
//! live request counts and outlier state) and the policy's picker: round robin, least
//! request (power of two choices), random, ring hash and Maglev (the same host as Envoy
//! for the same hash), original destination.
//!
//! Health: hosts EDS marks unhealthy and hosts ejected by outlier detection are skipped,
//! unless fewer than the panic threshold (50%) are healthy, when all hosts are used, as
//! Envoy does. Priorities: the lowest priority with a healthy host is used.

mod maglev;
mod ring;
pub mod xxhash;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::cluster::{Cluster, Discovery, LbKind, Locality};

pub use maglev::Maglev;
pub use ring::Ring;

/// One upstream host.
#[derive(Debug)]
pub struct Host {
    /// `ip:port` or `dns-name:port`, also the hash key (Envoy's `address()->asString()`).
    pub authority: String,
    pub weight: u32,
    pub priority: u32,
    pub healthy: bool,
    pub active: AtomicU32,
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    ejections: AtomicU32,
    /// Milliseconds since the cluster's epoch; 0 when not ejected.
    ejected_until: AtomicU64,
    /// TLS to originate to this host (its cluster's transport socket for its metadata).
    pub tls: Option<Arc<crate::config::tls::UpstreamTls>>,
}

impl Host {
    pub fn new(authority: String, weight: u32, priority: u32, healthy: bool) -> Host {
        Host {
            authority,
            weight,
            priority,
            healthy,
            active: AtomicU32::new(0),
            consecutive_5xx: AtomicU32::new(0),
            consecutive_gateway: AtomicU32::new(0),
            consecutive_local: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            tls: None,
        }
    }
}

/// What a pick may use.
#[derive(Debug, Default, Clone, Copy)]
pub struct PickCtx {
    pub hash: Option<u64>,
    pub original_dst: Option<SocketAddr>,
    pub attempt: u32,
}

#[derive(Debug)]
enum Picker {
    RoundRobin { order: Vec<u32>, next: AtomicUsize },
    LeastRequest,
    Random { cumulative: Vec<u64> },
    Ring(Ring),
    Maglev(Maglev),
    OriginalDst,
}

/// How a request ended, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Status(u16),
    /// Connect failure, reset or timeout (local origin).
    LocalFailure,
}

/// A cluster's hosts and policy, plus counters the circuit breakers read.
#[derive(Debug)]
pub struct ClusterLb {
    pub cluster: Arc<Cluster>,
    pub hosts: Vec<Arc<Host>>,
    picker: Picker,
    epoch: Instant,
    /// EDS marks every host healthy (then, without outlier detection, nothing to count).
    all_healthy: bool,
    pub active_requests: AtomicU32,
    pub active_retries: AtomicU32,
    /// Upstream requests sent and their answers by class (1xx..5xx); for the stats page.
    pub rq_total: AtomicU64,
    pub rq_xx: [AtomicU64; 5],
}

fn build_hosts(cluster: &Cluster, localities: &[Locality]) -> Vec<Arc<Host>> {
    let min_priority = localities.iter().map(|l| l.priority).min().unwrap_or(0);
    let mut hosts = Vec::new();
    for l in localities {
        for h in &l.hosts {
            let mut host = Host::new(
                h.key(),
                h.weight.max(1),
                l.priority - min_priority,
                h.healthy,
            );
            host.tls = cluster.tls_for(h);
            hosts.push(Arc::new(host));
        }
    }
    hosts
}

impl ClusterLb {
    pub fn new(cluster: Arc<Cluster>, localities: &[Locality]) -> ClusterLb {
        let hosts = build_hosts(&cluster, localities);
        let keys: Vec<(String, u32)> = hosts
            .iter()
            .filter(|h| h.priority == 0)
            .map(|h| (h.authority.clone(), h.weight))
            .collect();
        let picker = match cluster.lb {
            _ if cluster.discovery == Discovery::OriginalDst => Picker::OriginalDst,
            LbKind::RoundRobin => Picker::RoundRobin {
                order: weighted_order(&hosts),
                next: AtomicUsize::new(fastrand::usize(0..hosts.len().max(1))),
            },
            LbKind::LeastRequest | LbKind::ClusterProvided => Picker::LeastRequest,
            LbKind::Random => Picker::Random {
                cumulative: hosts
                    .iter()
                    .scan(0u64, |acc, h| {
                        *acc += u64::from(h.weight);
                        Some(*acc)
                    })
                    .collect(),
            },
            LbKind::RingHash { min_size, max_size } => {
                Picker::Ring(Ring::new(&keys, min_size, max_size))
            }
            LbKind::Maglev { table_size } => Picker::Maglev(Maglev::new(&keys, table_size)),
        };
        ClusterLb {
            all_healthy: hosts.iter().all(|h| h.healthy),
            cluster,
            hosts,
            picker,
            epoch: Instant::now(),
            active_requests: AtomicU32::new(0),
            active_retries: AtomicU32::new(0),
            rq_total: AtomicU64::new(0),
            rq_xx: Default::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn available(&self, h: &Host, now: u64) -> bool {
        h.healthy && {
            let until = h.ejected_until.load(Ordering::Relaxed);
            until == 0 || until <= now
        }
    }

    /// Whether too few hosts are healthy, so health is ignored (Envoy's panic mode).
    fn panic_mode(&self, now: u64) -> bool {
        if self.all_healthy && self.cluster.outlier.is_none() {
            return false;
        }
        let healthy = self.hosts.iter().filter(|h| self.available(h, now)).count();
        healthy * 2 < self.hosts.len()
    }

    /// Picks a host; `None` when the cluster has none to offer (Envoy's UH).
    pub fn pick(&self, ctx: &PickCtx) -> Option<Arc<Host>> {
        if let Picker::OriginalDst = self.picker {
            let dst = ctx.original_dst?;
            let mut host = Host::new(dst.to_string(), 1, 0, true);
            host.tls = self.cluster.tls.clone();
            return Some(Arc::new(host));
        }
        if self.hosts.is_empty() {
            return None;
        }
        let now = self.now_ms();
        let panic = self.panic_mode(now);
        let ok = |h: &Host| h.priority == 0 && (panic || self.available(h, now));
        let n = self.hosts.len();
        let chosen = match &self.picker {
            Picker::RoundRobin { order, next } => (0..order.len()).find_map(|_| {
                let i = order[next.fetch_add(1, Ordering::Relaxed) % order.len()] as usize;
                ok(&self.hosts[i]).then_some(i)
            }),
            Picker::LeastRequest => {
                // Two random usable hosts (a few tries each, then a scan), the less loaded.
                let one = || {
                    (0..4)
                        .map(|_| fastrand::usize(0..n))
                        .find(|i| ok(&self.hosts[*i]))
                        .or_else(|| {
                            let start = fastrand::usize(0..n);
                            (0..n)
                                .map(|k| (start + k) % n)
                                .find(|i| ok(&self.hosts[*i]))
                        })
                };
                match (one(), one()) {
                    (Some(a), Some(b)) => {
                        let load = |i: usize| self.hosts[i].active.load(Ordering::Relaxed);
                        Some(if load(b) < load(a) { b } else { a })
                    }
                    (a, b) => a.or(b),
                }
            }
            Picker::Random { cumulative } => {
                let total = cumulative.last().copied().unwrap_or(0);
                (0..8).find_map(|_| {
                    let r = fastrand::u64(0..total.max(1));
                    let i = cumulative.partition_point(|c| *c <= r).min(n - 1);
                    ok(&self.hosts[i]).then_some(i)
                })
            }
            Picker::Ring(ring) => {
                let hash = ctx.hash.unwrap_or_else(|| fastrand::u64(..));
                ring.position(hash).and_then(|pos| {
                    (0..ring.len()).find_map(|step| {
                        let i =
                            self.priority0_index(ring.host_at(pos, ctx.attempt as usize + step));
                        ok(&self.hosts[i]).then_some(i)
                    })
                })
            }
            Picker::Maglev(m) => {
                let hash = ctx.hash.unwrap_or_else(|| fastrand::u64(..));
                (0..16u32).find_map(|step| {
                    let i = self.priority0_index(m.pick(hash, ctx.attempt + step)?);
                    ok(&self.hosts[i]).then_some(i)
                })
            }
            Picker::OriginalDst => None,
        };
        let chosen = chosen.or_else(|| {
            // Nothing usable at priority 0: the lowest priority with an available host.
            let best = self
                .hosts
                .iter()
                .filter(|h| self.available(h, now))
                .map(|h| h.priority)
                .min()?;
            let pool: Vec<usize> = (0..n)
                .filter(|i| self.hosts[*i].priority == best && self.available(&self.hosts[*i], now))
                .collect();
            Some(pool[fastrand::usize(0..pool.len())])
        });
        chosen.map(|i| self.hosts[i].clone())
    }

    /// Ring and Maglev index only priority-0 hosts; map back to `hosts`.
    fn priority0_index(&self, k: u32) -> usize {
        self.hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.priority == 0)
            .nth(k as usize)
            .map_or(0, |(i, _)| i)
    }

    /// Outlier detection: counts consecutive failures and ejects a host that reaches a
    /// threshold, for `base_ejection_time × times ejected`, unless that would eject more
    /// than `max_ejection_percent` of the hosts (one host may always be ejected).
    pub fn report(&self, host: &Host, outcome: Outcome) {
        self.rq_total.fetch_add(1, Ordering::Relaxed);
        if let Outcome::Status(s) = outcome {
            if let Some(c) = self.rq_xx.get(usize::from(s / 100).wrapping_sub(1)) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        let Some(o) = self.cluster.outlier else {
            return;
        };
        let (five, gateway, local) = match outcome {
            Outcome::Status(s) if s >= 500 => (true, matches!(s, 502..=504), false),
            Outcome::Success | Outcome::Status(_) => {
                host.consecutive_5xx.store(0, Ordering::Relaxed);
                host.consecutive_gateway.store(0, Ordering::Relaxed);
                host.consecutive_local.store(0, Ordering::Relaxed);
                return;
            }
            // Local-origin failures count as 5xx (gateway errors) unless split.
            Outcome::LocalFailure => (true, true, true),
        };
        let mut trip = false;
        if five {
            trip |= host.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1 >= o.consecutive_5xx
                && o.consecutive_5xx > 0;
        }
        if gateway {
            if let Some(t) = o.consecutive_gateway_failure {
                trip |= host.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1 >= t && t > 0;
            }
        }
        if local {
            if let Some(t) = o.consecutive_local_origin_failure {
                trip |= host.consecutive_local.fetch_add(1, Ordering::Relaxed) + 1 >= t && t > 0;
            }
        }
        if !trip {
            return;
        }
        let now = self.now_ms();
        let ejected = self
            .hosts
            .iter()
            .filter(|h| h.ejected_until.load(Ordering::Relaxed) > now)
            .count();
        let limit = (self.hosts.len() * o.max_ejection_percent as usize / 100).max(1);
        if ejected >= limit {
            return;
        }
        let times = host.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let ms = (o.base_ejection_time * times)
            .min(Duration::from_secs(300))
            .as_millis() as u64;
        host.ejected_until.store(now + ms, Ordering::Relaxed);
        host.consecutive_5xx.store(0, Ordering::Relaxed);
        host.consecutive_gateway.store(0, Ordering::Relaxed);
        host.consecutive_local.store(0, Ordering::Relaxed);
        tracing::info!(cluster = %self.cluster.name, host = %host.authority, ms, "outlier ejected");
    }

    pub fn is_ejected(&self, host: &Host) -> bool {
        host.ejected_until.load(Ordering::Relaxed) > self.now_ms()
    }
}

/// Smooth weighted round robin order over all hosts (plain order when weights are equal).
fn weighted_order(hosts: &[Arc<Host>]) -> Vec<u32> {
    if hosts.is_empty() {
        return vec![0];
    }
    let first = hosts[0].weight;
    if hosts.iter().all(|h| h.weight == first) {
        return (0..hosts.len() as u32).collect();
    }
    let g = hosts.iter().fold(0u32, |g, h| gcd(g, h.weight));
    let weights: Vec<i64> = hosts
        .iter()
        .map(|h| i64::from(h.weight / g.max(1)))
        .collect();
    let total: i64 = weights.iter().sum();
    let len = total.min(10_000) as usize;
    let mut current = vec![0i64; hosts.len()];
    let mut order = Vec::with_capacity(len);
    for _ in 0..len {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            .unwrap_or((0, &0));
        current[best] -= total;
        order.push(best as u32);
    }
    order
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests;
