//! Gathers what the simulated proxies report and turns it into the bench's figures:
//! the full-push phase, then (watch mode) one line per endpoint change and a summary.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};

use crate::proxy::{Convergence, Event, Target};

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot read standard input: {0}")]
    Stdin(#[from] std::io::Error),
    #[error("bad input line {0:?}: expected `expect ID CLUSTER IP` or `wrote ID UNIX_NANOS`")]
    Line(String),
}

pub struct Collector {
    events: mpsc::UnboundedReceiver<Event>,
    convergence: Arc<Convergence>,
    proxies: usize,
    delta: bool,
    failed: HashSet<usize>,
    errors: Vec<String>,
}

/// The value at quantile `q` (nearest rank) of sorted `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn stats(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    json!({
        "p50": round(quantile(&v, 0.5)),
        "p99": round(quantile(&v, 0.99)),
        "max": round(v.last().copied().unwrap_or(f64::NAN)),
        "n": v.len(),
    })
}

impl Collector {
    pub fn new(
        events: mpsc::UnboundedReceiver<Event>,
        convergence: Arc<Convergence>,
        proxies: usize,
        delta: bool,
    ) -> Self {
        Collector {
            events,
            convergence,
            proxies,
            delta,
            failed: HashSet::new(),
            errors: Vec::new(),
        }
    }

    fn failed(&mut self, proxy: usize, error: String) {
        if self.failed.insert(proxy) && self.errors.len() < 5 {
            self.errors.push(error);
        }
    }

    /// Waits until every proxy has its full config (or failed, or the timeout passed).
    pub async fn full(&mut self, started: Instant, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::from_std(started + timeout);
        let mut done = Vec::new();
        let mut counts = None;
        while done.len() + self.failed.len() < self.proxies {
            let ev = tokio::select! {
                ev = self.events.recv() => ev,
                () = tokio::time::sleep_until(deadline) => None,
            };
            match ev {
                Some(Event::Full { at, counts: c, .. }) => {
                    done.push(at.duration_since(started).as_secs_f64());
                    counts.get_or_insert(c);
                }
                Some(Event::Failed { proxy, error }) => self.failed(proxy, error),
                Some(_) => {}
                None => break,
            }
        }
        let [clusters, endpoints, listeners, routes] = counts.unwrap_or_default();
        json!({
            "variant": if self.delta { "delta" } else { "sotw" },
            "proxies": self.proxies,
            "complete": done.len(),
            "failed": self.failed.len(),
            "errors": self.errors,
            "full_push_seconds": stats(done),
            "per_proxy_resources": {
                "clusters": clusters, "endpoints": endpoints,
                "listeners": listeners, "routes": routes,
            },
        })
    }

    /// Endpoint changes announced on standard input; see the binary's `--help`.
    pub async fn watch(
        &mut self,
        target: watch::Sender<Option<Arc<Target>>>,
        timeout: Duration,
    ) -> Result<(), CollectError> {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let mut affected: HashSet<usize> = HashSet::new();
        let mut current = 0u64;
        let mut worst = Vec::new();
        let mut all = Vec::new();
        let mut incomplete = 0usize;
        while let Some(line) = lines.next_line().await? {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["expect", id, cluster, ip] => {
                    current = id.parse().map_err(|_| CollectError::Line(line.clone()))?;
                    target.send_replace(Some(Arc::new(Target {
                        id: current,
                        cluster: cluster.to_string(),
                        ip: ip.to_string(),
                    })));
                    affected = self.affected(current).await;
                    self.convergence.arm(affected.len());
                    println!("armed {current} {}", affected.len());
                }
                ["wrote", id, nanos] => {
                    let id: u64 = id.parse().map_err(|_| CollectError::Line(line.clone()))?;
                    let nanos: u64 = nanos
                        .parse()
                        .map_err(|_| CollectError::Line(line.clone()))?;
                    if id != current {
                        return Err(CollectError::Line(line));
                    }
                    let wrote = UNIX_EPOCH + Duration::from_nanos(nanos);
                    let ms = self.converge(wrote, &affected, timeout).await;
                    let converged = ms.len();
                    if converged < affected.len() {
                        incomplete += 1;
                    }
                    let max = ms.iter().copied().fold(f64::NAN, f64::max);
                    if converged == affected.len() && converged > 0 {
                        worst.push(max);
                    }
                    all.extend(ms.iter().copied());
                    let line = json!({
                        "change": id, "affected": affected.len(), "converged": converged,
                        "all_acked_ms": round(max), "per_proxy_ms": stats(ms),
                    });
                    println!("converged {line}");
                }
                [] => {}
                _ => return Err(CollectError::Line(line)),
            }
        }
        let summary = json!({
            "variant": if self.delta { "delta" } else { "sotw" },
            "changes": worst.len() + incomplete,
            "incomplete_changes": incomplete,
            "write_to_all_acked_ms": stats(worst),
            "write_to_each_ack_ms": stats(all),
            "failed_proxies": self.failed.len(),
            "errors": self.errors,
        });
        println!("summary {summary}");
        Ok(())
    }

    /// Which live proxies subscribe to the announced change's cluster.
    async fn affected(&mut self, change: u64) -> HashSet<usize> {
        let mut answered = HashSet::new();
        let mut out = HashSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while answered.len() + self.failed.len() < self.proxies {
            let ev = tokio::select! {
                ev = self.events.recv() => ev,
                () = tokio::time::sleep_until(deadline) => None,
            };
            match ev {
                Some(Event::Affected {
                    change: c,
                    proxy,
                    affected,
                }) if c == change => {
                    answered.insert(proxy);
                    if affected {
                        out.insert(proxy);
                    }
                }
                Some(Event::Failed { proxy, error }) => self.failed(proxy, error),
                Some(_) => {}
                None => break,
            }
        }
        out
    }

    /// Milliseconds from `wrote` to each affected proxy's ACK of the change.
    async fn converge(
        &mut self,
        wrote: SystemTime,
        affected: &HashSet<usize>,
        timeout: Duration,
    ) -> Vec<f64> {
        let deadline = tokio::time::Instant::now() + timeout;
        let acks = self.convergence.wait(deadline).await;
        while let Ok(ev) = self.events.try_recv() {
            if let Event::Failed { proxy, error } = ev {
                self.failed(proxy, error);
            }
        }
        let seen: BTreeMap<usize, f64> = acks
            .into_iter()
            .filter(|(proxy, _)| affected.contains(proxy))
            .map(|(proxy, at)| {
                let ms = at
                    .duration_since(wrote)
                    .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
                (proxy, ms)
            })
            .collect();
        seen.into_values().collect()
    }
}
