//! A stream's per-type state, by type URL. A stream subscribes to a handful of types and
//! looks one up several times per push (2,000 streams per endpoint change): a vector
//! searched by length, then pointer, then bytes costs less than hashing the 60-byte URL,
//! and finding an entry allocates nothing. Envoy's own types are kept as the `'static`
//! constants the push loop asks with, so finding one does not read the key's bytes (cold
//! memory for most of 2,000 streams).

use std::borrow::Cow;

use crate::resources::WARMING_ORDER;

pub(crate) struct TypeMap<T> {
    entries: Vec<(Cow<'static, str>, T)>,
}

impl<T> Default for TypeMap<T> {
    fn default() -> Self {
        TypeMap {
            entries: Vec::new(),
        }
    }
}

impl<T: Default> TypeMap<T> {
    fn position(&self, type_url: &str) -> Option<usize> {
        self.entries.iter().position(|(k, _)| {
            k.len() == type_url.len()
                && (std::ptr::eq(k.as_ptr(), type_url.as_ptr()) || k == type_url)
        })
    }

    pub(crate) fn contains_key(&self, type_url: &str) -> bool {
        self.position(type_url).is_some()
    }

    pub(crate) fn get(&self, type_url: &str) -> Option<&T> {
        self.position(type_url).map(|i| &self.entries[i].1)
    }

    /// The entry for `type_url`, a default one added if there is none.
    pub(crate) fn entry_or_default(&mut self, type_url: &str) -> &mut T {
        let i = match self.position(type_url) {
            Some(i) => i,
            None => {
                let key = match WARMING_ORDER.iter().find(|t| **t == type_url) {
                    Some(t) => Cow::Borrowed(*t),
                    None => Cow::Owned(type_url.to_string()),
                };
                self.entries.push((key, T::default()));
                self.entries.len() - 1
            }
        };
        &mut self.entries[i].1
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| &**k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_by_type_url_and_added_once() {
        let mut m: TypeMap<u32> = TypeMap::default();
        assert!(!m.contains_key("a"));
        *m.entry_or_default("type.googleapis.com/x.Cluster") += 1;
        *m.entry_or_default("type.googleapis.com/x.Cluster") += 1;
        *m.entry_or_default("type.googleapis.com/x.Listener") += 5;
        assert_eq!(m.get("type.googleapis.com/x.Cluster"), Some(&2));
        assert_eq!(m.get("type.googleapis.com/x.Listener"), Some(&5));
        assert_eq!(m.get("type.googleapis.com/x.Secret"), None);
        assert_eq!(m.keys().count(), 2);
    }
}
