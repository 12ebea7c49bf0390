//! Resource names as small numbers. Every simulated proxy receives the same 2,400 names;
//! holding each as its own `String` per proxy was millions of allocations and hash-set
//! inserts per full push, on the two cores the control plane under test shares with this
//! tool. Names are interned once for the whole process and each proxy keeps numbers in
//! bit sets.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// A name's number.
pub type NameId = u32;

#[derive(Default)]
struct Table {
    ids: HashMap<Box<[u8]>, NameId, foldhash::fast::RandomState>,
    names: Vec<Arc<str>>,
}

/// The process-wide name table.
#[derive(Default)]
pub struct Interner {
    table: RwLock<Table>,
}

impl Interner {
    /// The number of `name` (raw bytes off the wire), assigned on first sight.
    pub fn id(&self, name: &[u8]) -> NameId {
        if let Some(id) = self
            .table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .ids
            .get(name)
        {
            return *id;
        }
        let mut t = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = t.ids.get(name) {
            return *id;
        }
        let id = NameId::try_from(t.names.len()).unwrap_or(NameId::MAX);
        t.names
            .push(Arc::from(String::from_utf8_lossy(name).as_ref()));
        t.ids.insert(name.into(), id);
        id
    }

    /// The names of `ids`, sorted by name (as Envoy's requests list them).
    pub fn sorted_names(&self, ids: &[NameId]) -> Vec<String> {
        let t = self.table.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<String> = ids
            .iter()
            .filter_map(|id| t.names.get(*id as usize))
            .map(|n| n.to_string())
            .collect();
        out.sort_unstable();
        out
    }
}

/// A set of name numbers.
#[derive(Debug, Default, Clone)]
pub struct IdSet {
    words: Vec<u64>,
    len: usize,
}

impl PartialEq for IdSet {
    fn eq(&self, other: &IdSet) -> bool {
        let word = |s: &IdSet, i: usize| s.words.get(i).copied().unwrap_or(0);
        self.len == other.len
            && (0..self.words.len().max(other.words.len())).all(|i| word(self, i) == word(other, i))
    }
}

impl Eq for IdSet {}

impl IdSet {
    pub fn insert(&mut self, id: NameId) -> bool {
        let (w, bit) = (id as usize / 64, 1u64 << (id % 64));
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let new = self.words[w] & bit == 0;
        self.words[w] |= bit;
        self.len += usize::from(new);
        new
    }

    pub fn remove(&mut self, id: NameId) -> bool {
        let (w, bit) = (id as usize / 64, 1u64 << (id % 64));
        let Some(word) = self.words.get_mut(w) else {
            return false;
        };
        let had = *word & bit != 0;
        *word &= !bit;
        self.len -= usize::from(had);
        had
    }

    pub fn contains(&self, id: NameId) -> bool {
        self.words
            .get(id as usize / 64)
            .is_some_and(|w| w & (1u64 << (id % 64)) != 0)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn iter(&self) -> impl Iterator<Item = NameId> + '_ {
        self.words.iter().enumerate().flat_map(|(w, word)| {
            let mut word = *word;
            std::iter::from_fn(move || {
                if word == 0 {
                    return None;
                }
                let bit = word.trailing_zeros();
                word &= word - 1;
                Some(w as NameId * 64 + bit)
            })
        })
    }

    /// Keeps only the members of `other`.
    pub fn retain_in(&mut self, other: &IdSet) {
        let mut len = 0;
        for (i, w) in self.words.iter_mut().enumerate() {
            *w &= other.words.get(i).copied().unwrap_or(0);
            len += w.count_ones() as usize;
        }
        self.len = len;
    }

    /// Whether every member of `self` is in `other`.
    pub fn is_subset(&self, other: &IdSet) -> bool {
        self.words
            .iter()
            .enumerate()
            .all(|(i, w)| w & !other.words.get(i).copied().unwrap_or(0) == 0)
    }

    /// Members of `self` not in `other`.
    pub fn difference<'a>(&'a self, other: &'a IdSet) -> impl Iterator<Item = NameId> + 'a {
        self.iter().filter(|id| !other.contains(*id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_one_number_each() {
        let i = Interner::default();
        let a = i.id(b"outbound|80||a");
        let b = i.id(b"outbound|80||b");
        assert_ne!(a, b);
        assert_eq!(i.id(b"outbound|80||a"), a);
        assert_eq!(
            i.sorted_names(&[b, a]),
            ["outbound|80||a", "outbound|80||b"]
        );
    }

    #[test]
    fn sets() {
        let mut s = IdSet::default();
        assert!(s.insert(3) && s.insert(200) && !s.insert(3));
        assert_eq!(s.len(), 2);
        assert_eq!(s.iter().collect::<Vec<_>>(), [3, 200]);
        let mut t = IdSet::default();
        t.insert(200);
        assert!(t.is_subset(&s) && !s.is_subset(&t));
        assert_eq!(s.difference(&t).collect::<Vec<_>>(), [3]);
        s.retain_in(&t);
        assert_eq!(s, t);
        assert!(s.remove(200) && s.len() == 0);
    }
}
