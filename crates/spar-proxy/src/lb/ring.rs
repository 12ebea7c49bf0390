//! Envoy's ring hash: each host gets `scale * normalized weight` points named
//! `<address>_<i>` and hashed with xxHash64; a request hash picks the first point at or
//! after it (wrapping), searched the way Envoy's ketama-derived loop does.

use super::xxhash::xxhash64;

#[derive(Debug)]
pub struct Ring {
    /// (hash, host index), sorted by hash.
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// `hosts`: (hash key, weight) in the order the cluster lists them.
    pub fn new(hosts: &[(String, u32)], min_size: u64, max_size: u64) -> Ring {
        let total: f64 = hosts.iter().map(|(_, w)| f64::from(*w)).sum();
        if hosts.is_empty() || total <= 0.0 {
            return Ring { points: Vec::new() };
        }
        let normalized: Vec<f64> = hosts.iter().map(|(_, w)| f64::from(*w) / total).collect();
        let min_w = normalized.iter().copied().fold(f64::INFINITY, f64::min);
        let scale = ((min_w * min_size as f64).ceil() / min_w).min(max_size as f64);
        let mut points = Vec::with_capacity(scale.ceil() as usize);
        let (mut current, mut target) = (0.0f64, 0.0f64);
        for (idx, ((key, _), w)) in hosts.iter().zip(&normalized).enumerate() {
            target += scale * w;
            let mut i = 0u64;
            while current < target {
                let point = format!("{key}_{i}");
                points.push((xxhash64(point.as_bytes(), 0), idx as u32));
                i += 1;
                current += 1.0;
            }
        }
        points.sort_by_key(|p| p.0);
        Ring { points }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The ring position for `hash` (Envoy's search: the first point whose hash is at
    /// least `hash`, wrapping to the start).
    pub fn position(&self, hash: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let n = self.points.len() as i64;
        let (mut low, mut high) = (0i64, n);
        loop {
            let mid = (low + high) / 2;
            if mid == n {
                return Some(0);
            }
            let midval = self.points[mid as usize].0;
            let before = if mid == 0 {
                0
            } else {
                self.points[mid as usize - 1].0
            };
            if hash <= midval && hash > before {
                return Some(mid as usize);
            }
            if midval < hash {
                low = mid + 1;
            } else {
                high = mid - 1;
            }
            if low > high {
                return Some(0);
            }
        }
    }

    /// The host at ring position `pos + attempt` (Envoy's retry walk).
    pub fn host_at(&self, pos: usize, attempt: usize) -> u32 {
        self.points[(pos + attempt) % self.points.len()].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weights_give_equal_shares() {
        let hosts: Vec<(String, u32)> = (1..=4).map(|i| (format!("10.0.0.{i}:80"), 1)).collect();
        let ring = Ring::new(&hosts, 1024, 8 << 20);
        assert_eq!(ring.len(), 1024);
        let mut per = [0; 4];
        for p in &ring.points {
            per[p.1 as usize] += 1;
        }
        assert_eq!(per, [256; 4]);
        // The first point of host 0 is xxHash64("10.0.0.1:80_0"), as Envoy names it.
        let h = xxhash64(b"10.0.0.1:80_0", 0);
        let pos = ring.position(h).unwrap();
        assert_eq!(ring.points[pos].0, h);
        assert_eq!(ring.host_at(pos, 0), 0);
    }

    #[test]
    fn search_wraps_and_finds_the_next_point() {
        // Weights 1:3 with a minimum of 8: the light host gets ceil(0.25 * 8) = 2 points
        // and the scale is 8, so the heavy host gets 6.
        let ring = Ring::new(&[("a:1".into(), 1), ("b:1".into(), 3)], 8, 100);
        assert_eq!(ring.len(), 8);
        assert_eq!(ring.points.iter().filter(|p| p.1 == 0).count(), 2);
        let last = ring.points.last().unwrap().0;
        if last < u64::MAX {
            assert_eq!(
                ring.position(last + 1),
                Some(0),
                "past the last point wraps"
            );
        }
        assert_eq!(ring.position(0), Some(0));
        for i in 1..ring.points.len() {
            let (prev, cur) = (ring.points[i - 1].0, ring.points[i].0);
            if cur > prev {
                assert_eq!(ring.position(prev + 1), Some(i));
                assert_eq!(ring.position(cur), Some(i));
            }
        }
    }
}
