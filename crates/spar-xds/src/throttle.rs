//! How many connections may have a push in flight at once (Istio's
//! `PILOT_PUSH_THROTTLE`).
//!
//! A connection takes a permit before it sends and keeps it until the proxy has answered
//! (ACK or NACK) every response it was sent, so the responses being written, and the memory
//! they take, are bounded by the permit count rather than by the number of proxies. A
//! proxy that does not answer within [`ANSWER_TIMEOUT`] gives its permit back (it keeps its
//! stream): one stuck client must not stall everyone's pushes.
//!
//! Responses under [`SMALL`] bytes (an endpoint change: one assignment per proxy) take no
//! permit: their memory is negligible, and making 2,000 of them wait in turns of a
//! hundred round trips would cost the latency the throttle is not there to bound.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Responses smaller than this go out without a permit.
pub(crate) const SMALL: usize = 64 << 10;

/// How long a connection may hold a permit waiting for its proxy's answers.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection's share of the push permits.
pub(crate) struct Throttle {
    permits: Arc<Semaphore>,
    timeout: Duration,
    held: Option<(OwnedSemaphorePermit, Instant)>,
    /// Types with a response the proxy has not answered yet.
    awaiting: BTreeSet<String>,
}

impl Throttle {
    pub(crate) fn new(permits: Arc<Semaphore>, timeout: Duration) -> Throttle {
        Throttle {
            permits,
            timeout,
            held: None,
            awaiting: BTreeSet::new(),
        }
    }

    /// Called before sending a response of `type_url` of `size` bytes: waits for a permit
    /// if the response is not small and the connection holds none.
    pub(crate) async fn sending(&mut self, type_url: &str, size: usize) {
        if self.held.is_none() {
            if size < SMALL {
                return;
            }
            // The semaphore is never closed, so acquiring only fails if it were.
            if let Ok(p) = self.permits.clone().acquire_owned().await {
                self.held = Some((p, Instant::now() + self.timeout));
            }
        }
        if !self.awaiting.contains(type_url) {
            self.awaiting.insert(type_url.to_string());
        }
    }

    /// The proxy answered the latest response of `type_url`.
    pub(crate) fn answered(&mut self, type_url: &str) {
        self.awaiting.remove(type_url);
        if self.awaiting.is_empty() {
            self.held = None;
        }
    }

    /// When the held permit is given back if the proxy stays silent.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.held.as_ref().map(|(_, d)| *d)
    }

    /// Gives the permit back without waiting for the answers.
    pub(crate) fn expire(&mut self) {
        if self.held.take().is_some() {
            tracing::debug!(
                awaiting = ?self.awaiting,
                "proxy did not answer in time; push permit returned"
            );
        }
        self.awaiting.clear();
    }
}

/// Completes at `deadline`; never without one.
pub(crate) async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_permit_is_held_until_every_type_is_answered() {
        let permits = Arc::new(Semaphore::new(1));
        let mut a = Throttle::new(permits.clone(), ANSWER_TIMEOUT);
        a.sending("cds", SMALL).await;
        a.sending("eds", SMALL).await;
        assert_eq!(permits.available_permits(), 0);
        a.answered("cds");
        assert_eq!(permits.available_permits(), 0, "eds still unanswered");
        a.answered("eds");
        assert_eq!(permits.available_permits(), 1);
        assert!(a.deadline().is_none());
        a.sending("eds", 100).await;
        assert!(a.deadline().is_none(), "a small response takes no permit");
        assert_eq!(permits.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_silent_proxy_gives_its_permit_back() {
        let permits = Arc::new(Semaphore::new(1));
        let short = Duration::from_millis(20);
        let mut a = Throttle::new(permits.clone(), short);
        a.sending("cds", SMALL).await;
        let mut b = Throttle::new(permits.clone(), short);
        let waiting = tokio::spawn(async move {
            b.sending("cds", SMALL).await;
            b
        });
        until(a.deadline()).await;
        a.expire();
        let b = waiting.await.expect("b got a permit");
        assert!(b.deadline().is_some());
        assert_eq!(permits.available_permits(), 0);
    }
}
