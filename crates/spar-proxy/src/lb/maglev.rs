//! Envoy's Maglev table: hosts sorted by hash key, offset `xxHash64(key) % M`, skip
//! `xxHash64(key, seed 1) % (M - 1) + 1`, filled round by round with weights relative to
//! the heaviest host; a request picks `table[hash % M]`.

use super::xxhash::xxhash64;

#[derive(Debug)]
pub struct Maglev {
    table: Vec<u32>,
}

struct Entry {
    host: u32,
    offset: u64,
    skip: u64,
    weight: f64,
    target: f64,
    next: u64,
}

impl Maglev {
    /// `hosts`: (hash key, weight); `size` must be prime (checked at config time).
    pub fn new(hosts: &[(String, u32)], size: u64) -> Maglev {
        let total: f64 = hosts.iter().map(|(_, w)| f64::from(*w)).sum();
        if hosts.is_empty() || total <= 0.0 || size < 2 {
            return Maglev { table: Vec::new() };
        }
        let mut sorted: Vec<(&str, u32, f64)> = hosts
            .iter()
            .enumerate()
            .map(|(i, (k, w))| (k.as_str(), i as u32, f64::from(*w) / total))
            .collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0).then(a.1.cmp(&b.1)));
        let max_w = sorted.iter().map(|e| e.2).fold(0.0, f64::max);
        let mut entries: Vec<Entry> = sorted
            .iter()
            .map(|(k, i, w)| Entry {
                host: *i,
                offset: xxhash64(k.as_bytes(), 0) % size,
                skip: xxhash64(k.as_bytes(), 1) % (size - 1) + 1,
                weight: *w,
                target: 0.0,
                next: 0,
            })
            .collect();
        let mut table = vec![u32::MAX; size as usize];
        let mut filled = 0u64;
        let mut iteration = 1u32;
        while filled < size {
            for e in entries.iter_mut() {
                if filled >= size {
                    break;
                }
                if f64::from(iteration) * e.weight < e.target {
                    continue;
                }
                e.target += max_w;
                let mut c = (e.offset + e.skip * e.next) % size;
                while table[c as usize] != u32::MAX {
                    e.next += 1;
                    c = (e.offset + e.skip * e.next) % size;
                }
                table[c as usize] = e.host;
                e.next += 1;
                filled += 1;
            }
            iteration += 1;
        }
        Maglev { table }
    }

    /// The host for `hash`; retries mutate the hash as Envoy does.
    pub fn pick(&self, hash: u64, attempt: u32) -> Option<u32> {
        if self.table.is_empty() {
            return None;
        }
        let h = if attempt > 0 {
            hash ^ (u64::MAX - u64::from(attempt) + 1)
        } else {
            hash
        };
        Some(self.table[(h % self.table.len() as u64) as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_shape_the_table() {
        let hosts = vec![
            ("10.0.0.1:80".to_string(), 1),
            ("10.0.0.2:80".to_string(), 3),
        ];
        let m = Maglev::new(&hosts, 65537);
        let heavy = m.table.iter().filter(|h| **h == 1).count() as f64;
        let share = heavy / 65537.0;
        assert!((share - 0.75).abs() < 0.01, "share {share}");
        assert!(m.table.iter().all(|h| *h < 2));
    }

    #[test]
    fn small_table_is_deterministic_and_full() {
        let hosts: Vec<(String, u32)> = (1..=3).map(|i| (format!("10.0.0.{i}:80"), 1)).collect();
        let a = Maglev::new(&hosts, 7);
        let mut rev = hosts.clone();
        rev.reverse();
        let b = Maglev::new(&rev, 7);
        // Same hosts in another order: the same host (by key) in every slot.
        for (x, y) in a.table.iter().zip(&b.table) {
            assert_eq!(hosts[*x as usize].0, rev[*y as usize].0);
        }
        assert!(a.table.iter().all(|h| *h != u32::MAX));
    }
}
