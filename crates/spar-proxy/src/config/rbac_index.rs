//! Which RBAC policies a request's path can match, without looking at the others: policies
//! with no path gate always can; the rest are reached by walking a byte trie of their
//! literal paths along the request's path. Built once per RBAC rule set; the walk touches
//! one node per path byte at most and allocates nothing.

use super::rbac::{PathLiteral, RbacPolicy};

#[derive(Debug, Clone, Default)]
pub struct PathIndex {
    /// Policies without a gate, in policy order.
    ungated: Vec<u32>,
    /// `nodes[0]` is the root (the empty path).
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Sorted by byte.
    children: Vec<(u8, u32)>,
    /// Policies with a prefix literal ending here.
    prefix_of: Vec<u32>,
    /// Policies with an exact literal ending here.
    exact_of: Vec<u32>,
}

impl PathIndex {
    pub fn build(policies: &[(String, RbacPolicy)]) -> PathIndex {
        let mut index = PathIndex {
            ungated: Vec::new(),
            nodes: vec![Node::default()],
        };
        for (i, (_, p)) in policies.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            let Some(lits) = p.path_gate() else {
                index.ungated.push(i);
                continue;
            };
            for lit in &lits {
                let (text, exact) = match lit {
                    PathLiteral::Exact(s) => (s, true),
                    PathLiteral::Prefix(s) => (s, false),
                };
                let node = index.insert(text.as_bytes());
                let list = if exact {
                    &mut index.nodes[node].exact_of
                } else {
                    &mut index.nodes[node].prefix_of
                };
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        index
    }

    fn insert(&mut self, bytes: &[u8]) -> usize {
        let mut at = 0;
        for &b in bytes {
            at = match self.nodes[at].children.binary_search_by_key(&b, |c| c.0) {
                Ok(k) => self.nodes[at].children[k].1 as usize,
                Err(k) => {
                    let next = self.nodes.len();
                    self.nodes.push(Node::default());
                    let id = u32::try_from(next).unwrap_or(u32::MAX);
                    self.nodes[at].children.insert(k, (b, id));
                    next
                }
            };
        }
        at
    }

    /// The policies that need no path, in order.
    pub fn ungated(&self) -> &[u32] {
        &self.ungated
    }

    /// Calls `f` with every gated policy whose literal `path` passes (any order; a policy
    /// with several literals may come more than once).
    pub fn for_each_admitted(&self, path: &str, mut f: impl FnMut(u32)) {
        let mut at = 0usize;
        let bytes = path.as_bytes();
        for &b in bytes {
            self.nodes[at].prefix_of.iter().for_each(|&i| f(i));
            match self.nodes[at].children.binary_search_by_key(&b, |c| c.0) {
                Ok(k) => at = self.nodes[at].children[k].1 as usize,
                Err(_) => return,
            }
        }
        // The node of the whole path (or the root for an empty one).
        let node = &self.nodes[at];
        node.prefix_of.iter().for_each(|&i| f(i));
        node.exact_of.iter().for_each(|&i| f(i));
    }
}
