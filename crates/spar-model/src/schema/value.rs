//! How the validator reads scalar values: exactly as our deserializer does, so that what
//! validates also deserializes (see `crate::yaml::de`).

use crate::yaml::{Key, Node, Resolved};

/// An integer field's value: an integer, a quoted integer, or an integral float.
pub(crate) fn int_value(node: &Node) -> Option<i128> {
    match node.resolved()? {
        Resolved::Int(i) => Some(i128::from(i)),
        Resolved::BigInt(t) => t.parse().ok(),
        Resolved::Str(s) => s.trim().parse().ok(),
        // Integral floats below 2^53 are exact, which is what the deserializer accepts too.
        #[allow(clippy::cast_possible_truncation)]
        Resolved::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i128),
        _ => None,
    }
}

/// A number field's value: integers, floats and quoted numbers.
pub(crate) fn number_value(node: &Node) -> Option<f64> {
    match node.resolved()? {
        #[allow(clippy::cast_precision_loss)]
        Resolved::Int(i) => Some(i as f64),
        Resolved::Float(f) => Some(f),
        Resolved::BigInt(t) => t.parse().ok(),
        Resolved::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The items of a sequence; none for anything else.
pub(crate) fn seq_of(node: &Node) -> &[Node] {
    node.as_seq().unwrap_or_default()
}

/// A mapping's entries with repeated keys resolved as the deserializer does (the last one
/// counts), in source order.
pub(crate) fn unique_entries(node: &Node) -> Vec<&(Key, Node)> {
    let Some(map) = node.as_map() else {
        return Vec::new();
    };
    map.iter()
        .enumerate()
        .filter(|(i, (k, _))| !map[i + 1..].iter().any(|(later, _)| later.text == k.text))
        .map(|(_, e)| e)
        .collect()
}
