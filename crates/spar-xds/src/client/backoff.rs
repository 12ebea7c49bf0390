//! Reconnect delays: exponential from `initial` to `max`, each drawn uniformly from its upper
//! half, so a fleet of proxies that lost the control plane together does not return together.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    seed: RandomState,
    draws: u64,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            current: initial,
            seed: RandomState::new(),
            draws: 0,
        }
    }

    /// Back to the initial delay (after a stream that worked).
    pub(crate) fn reset(&mut self) {
        self.current = self.initial;
    }

    /// The delay before the next attempt; doubles the one after.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.current;
        self.current = (self.current * 2).min(self.max);
        // A random fraction in [0, 1) from std's per-process random hasher keys: enough
        // for jitter, no extra dependency.
        self.draws += 1;
        let mut h = self.seed.build_hasher();
        h.write_u64(self.draws);
        let frac = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
        ceiling.mul_f64(0.5 + frac / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        let ceilings = [100u64, 200, 400, 800, 1000, 1000, 1000, 1000];
        for (d, c) in delays.iter().zip(ceilings) {
            let c = Duration::from_millis(c);
            assert!(*d <= c && *d >= c / 2, "{d:?} outside [{:?}, {c:?}]", c / 2);
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
