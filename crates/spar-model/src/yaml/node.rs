//! The positioned YAML tree every Spar config passes through.
//!
//! Kubernetes reads YAML by converting it to JSON first, so keys are strings and a
//! plain scalar's type is decided by YAML 1.1 rules (as Go's `yaml.v2` does). We keep
//! the scalar's source text and style and resolve it only when a field asks for a
//! type, so `addresses: [1.2.3.4, 001:db8::]` stays two strings.

use std::fmt;

/// Where a node starts in its source text (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct Mark {
    pub line: u32,
    pub col: u32,
}

/// How a scalar was written; only plain scalars are subject to type resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    Plain,
    Quoted,
    Block,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    pub style: ScalarStyle,
    /// Explicit tag such as `!!str` or `!!int`, without the handle.
    pub tag: Option<String>,
}

/// A mapping key: always a string once read, as in Kubernetes' YAML-to-JSON step.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub text: String,
    pub mark: Mark,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub mark: Mark,
}

/// A plain scalar's type under YAML 1.1 core resolution (what Go's yaml.v2 decides).
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer outside i64 (e.g. a large uint64); kept as text.
    BigInt(&'a str),
    Float(f64),
    Str(&'a str),
}

impl Resolved<'_> {
    /// The JSON type name Kubernetes uses in its error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Resolved::Null => "null",
            Resolved::Bool(_) => "boolean",
            Resolved::Int(_) | Resolved::BigInt(_) => "integer",
            Resolved::Float(_) => "number",
            Resolved::Str(_) => "string",
        }
    }
}

// === impl Node ===

impl Node {
    pub fn new(kind: NodeKind, mark: Mark) -> Self {
        Node { kind, mark }
    }

    pub fn null(mark: Mark) -> Self {
        Node::scalar("", ScalarStyle::Plain, mark)
    }

    pub fn scalar(text: impl Into<String>, style: ScalarStyle, mark: Mark) -> Self {
        Node {
            kind: NodeKind::Scalar(Scalar {
                text: text.into(),
                style,
                tag: None,
            }),
            mark,
        }
    }

    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar's resolved value; `None` for mappings and sequences.
    pub fn resolved(&self) -> Option<Resolved<'_>> {
        self.as_scalar().map(Scalar::resolve)
    }

    pub fn is_null(&self) -> bool {
        matches!(self.resolved(), Some(Resolved::Null))
    }

    /// The string a field of type string would read: any scalar's text, except null.
    pub fn as_str(&self) -> Option<&str> {
        match self.resolved()? {
            Resolved::Null => None,
            _ => self.as_scalar().map(|s| s.text.as_str()),
        }
    }

    /// Value of `key` in a mapping (the last one, if the key is repeated).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .rev()
            .find(|(k, _)| k.text == key)
            .map(|(_, v)| v)
    }

    /// Follows a field path (`spec.http[0].route`) as far as it exists and returns the
    /// deepest node reached, so a diagnostic can point at the closest line.
    pub fn locate(&self, path: &crate::FieldPath) -> &Node {
        let mut cur = self;
        for seg in path.segments() {
            let next = match seg {
                crate::PathSeg::Field(k) | crate::PathSeg::Key(k) => cur.get(k),
                crate::PathSeg::Index(i) => cur.as_seq().and_then(|s| s.get(*i)),
            };
            match next {
                Some(n) => cur = n,
                None => break,
            }
        }
        cur
    }

    /// A short description of the node's type for error messages.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(s) => s.resolve().type_name(),
            NodeKind::Seq(_) => "array",
            NodeKind::Map(_) => "object",
        }
    }

    /// Number of nodes in this tree (used to bound alias expansion).
    pub fn size(&self) -> usize {
        match &self.kind {
            NodeKind::Scalar(_) => 1,
            NodeKind::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            NodeKind::Map(entries) => 1 + entries.iter().map(|(_, v)| 1 + v.size()).sum::<usize>(),
        }
    }
}

// === impl Scalar ===

impl Scalar {
    /// Resolves the scalar as Go's yaml.v2 does: quoted and block scalars are strings;
    /// plain ones may be null, bool, int or float (YAML 1.1), else strings.
    pub fn resolve(&self) -> Resolved<'_> {
        if let Some(tag) = &self.tag {
            return match tag.as_str() {
                "str" | "binary" => Resolved::Str(&self.text),
                "null" => Resolved::Null,
                "bool" => {
                    resolve_bool(&self.text).map_or(Resolved::Str(&self.text), Resolved::Bool)
                }
                "int" => resolve_int(&self.text).unwrap_or(Resolved::Str(&self.text)),
                "float" => resolve_float(&self.text)
                    .or_else(|| {
                        resolve_int(&self.text).map(|r| match r {
                            Resolved::Int(i) => Resolved::Float(i as f64),
                            other => other,
                        })
                    })
                    .unwrap_or(Resolved::Str(&self.text)),
                _ => Resolved::Str(&self.text),
            };
        }
        if self.style != ScalarStyle::Plain {
            return Resolved::Str(&self.text);
        }
        let t = self.text.as_str();
        match t {
            "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
            _ => {}
        }
        if let Some(b) = resolve_bool(t) {
            return Resolved::Bool(b);
        }
        if let Some(i) = resolve_int(t) {
            return i;
        }
        if let Some(f) = resolve_float(t) {
            return f;
        }
        Resolved::Str(t)
    }
}

fn resolve_bool(t: &str) -> Option<bool> {
    match t {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

fn resolve_int(t: &str) -> Option<Resolved<'_>> {
    let (neg, body) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if body.is_empty() {
        return None;
    }
    let cleaned: String = body.chars().filter(|c| *c != '_').collect();
    if cleaned.is_empty() || body.starts_with('_') {
        return None;
    }
    let (digits, radix) = if let Some(h) = cleaned.strip_prefix("0x") {
        (h.to_string(), 16)
    } else if let Some(b) = cleaned.strip_prefix("0b") {
        (b.to_string(), 2)
    } else if let Some(o) = cleaned.strip_prefix("0o") {
        (o.to_string(), 8)
    } else if cleaned.len() > 1 && cleaned.starts_with('0') {
        (cleaned[1..].to_string(), 8)
    } else {
        (cleaned, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    match i128::from_str_radix(&digits, radix) {
        Ok(v) => {
            let v = if neg { -v } else { v };
            Some(i64::try_from(v).map_or(Resolved::BigInt(t), Resolved::Int))
        }
        Err(_) => Some(Resolved::BigInt(t)),
    }
}

fn resolve_float(t: &str) -> Option<Resolved<'_>> {
    match t {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Some(Resolved::Float(f64::INFINITY))
        }
        "-.inf" | "-.Inf" | "-.INF" => return Some(Resolved::Float(f64::NEG_INFINITY)),
        ".nan" | ".NaN" | ".NAN" => return Some(Resolved::Float(f64::NAN)),
        _ => {}
    }
    // YAML 1.1 float: [-+]?([0-9][0-9_]*)?\.[0-9.]*([eE][-+][0-9]+)? ; also accept 1e3.
    let bytes = t.as_bytes();
    let first = *bytes.first()?;
    if !(first.is_ascii_digit() || first == b'.' || first == b'-' || first == b'+') {
        return None;
    }
    if !t.contains(['.', 'e', 'E']) {
        return None;
    }
    if !t.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    if t.matches('.').count() > 1 {
        return None;
    }
    let cleaned: String = t.chars().filter(|c| *c != '_').collect();
    cleaned.parse::<f64>().ok().map(Resolved::Float)
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(t: &str) -> Scalar {
        Scalar {
            text: t.into(),
            style: ScalarStyle::Plain,
            tag: None,
        }
    }

    #[test]
    fn resolves_like_go_yaml_v2() {
        let cases: &[(&str, Resolved)] = &[
            ("", Resolved::Null),
            ("~", Resolved::Null),
            ("true", Resolved::Bool(true)),
            ("ON", Resolved::Bool(true)),
            ("off", Resolved::Bool(false)),
            ("80", Resolved::Int(80)),
            ("-10", Resolved::Int(-10)),
            ("0x1F", Resolved::Int(31)),
            ("0777", Resolved::Int(511)),
            ("1.5", Resolved::Float(1.5)),
            ("1.2.3.4", Resolved::Str("1.2.3.4")),
            ("001:db8::", Resolved::Str("001:db8::")),
            ("10s", Resolved::Str("10s")),
            ("v1", Resolved::Str("v1")),
            ("1e3", Resolved::Float(1000.0)),
            ("089", Resolved::Str("089")),
            ("-", Resolved::Str("-")),
            (".", Resolved::Str(".")),
        ];
        for (text, want) in cases {
            assert_eq!(plain(text).resolve(), *want, "{text}");
        }
    }

    #[test]
    fn quoted_scalars_are_strings() {
        let s = Scalar {
            text: "80".into(),
            style: ScalarStyle::Quoted,
            tag: None,
        };
        assert_eq!(s.resolve(), Resolved::Str("80"));
    }
}
