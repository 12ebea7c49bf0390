//! Serde deserialization from a positioned [`Node`] tree.
//!
//! The rules follow what Kubernetes and Istio accept:
//! - a string field takes any non-null scalar's source text (`version: 1.0` is "1.0");
//! - integer and float fields also take quoted numbers, as protobuf's JSON mapping does;
//! - `null` for a list, map or object reads as empty, as Go does;
//! - keys a struct does not know are reported as [`Notice`]s (warnings), not errors;
//! - a repeated key is reported and the last occurrence wins.
//!
//! Errors carry the field path and the line of the offending node.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use super::node::{Key, Mark, Node, NodeKind, Resolved};
use crate::path::{FieldPath, PathSeg};

/// Something acceptable but worth a warning, found while reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A key the target type does not define (`kubectl --validate=warn` reports these).
    UnknownField {
        path: FieldPath,
        mark: Mark,
        /// A known field that differs only in letter case (`Name` for `name`): Go's old
        /// JSON decoding matched those, today's Kubernetes does not.
        did_you_mean: Option<&'static str>,
    },
    /// A key given twice in one mapping; the last one is used.
    DuplicateKey { path: FieldPath, mark: Mark },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct DeError {
    pub path: FieldPath,
    pub mark: Mark,
    pub message: String,
    located: bool,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_root() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            path: FieldPath::root(),
            mark: Mark::default(),
            message: msg.to_string(),
            located: false,
        }
    }
}

impl DeError {
    fn at(mut self, path: &FieldPath, mark: Mark) -> Self {
        if !self.located {
            self.path = path.clone();
            self.mark = mark;
            self.located = true;
        }
        self
    }
}

/// Reads `T` from `node`. Unknown and duplicate keys go to `notices` when given.
pub fn from_node<T: DeserializeOwned>(
    node: &Node,
    notices: Option<&mut Vec<Notice>>,
) -> Result<T, DeError> {
    from_node_at(node, FieldPath::root(), notices)
}

/// Like [`from_node`], with paths reported relative to `base` (e.g. `spec`).
pub fn from_node_at<T: DeserializeOwned>(
    node: &Node,
    base: FieldPath,
    notices: Option<&mut Vec<Notice>>,
) -> Result<T, DeError> {
    let sink = RefCell::new(Vec::new());
    let result = T::deserialize(NodeDe {
        node,
        path: base,
        sink: &sink,
    });
    if let Some(out) = notices {
        out.extend(sink.into_inner());
    }
    result
}

struct NodeDe<'a> {
    node: &'a Node,
    path: FieldPath,
    sink: &'a RefCell<Vec<Notice>>,
}

impl<'a> NodeDe<'a> {
    fn child(&self, node: &'a Node, seg: PathSeg) -> NodeDe<'a> {
        let mut path = self.path.clone();
        path.push(seg);
        NodeDe {
            node,
            path,
            sink: self.sink,
        }
    }

    fn err(&self, message: impl Into<String>) -> DeError {
        DeError {
            path: self.path.clone(),
            mark: self.node.mark,
            message: message.into(),
            located: true,
        }
    }

    fn wrong_type(&self, want: &str) -> DeError {
        let got = match self.node.resolved() {
            Some(Resolved::Str(s)) => format!("string {s:?}"),
            Some(Resolved::Null) => "null".to_string(),
            Some(_) => format!(
                "{} {}",
                self.node.type_name(),
                self.node.as_scalar().map_or("", |s| s.text.as_str())
            ),
            None => self.node.type_name().to_string(),
        };
        self.err(format!("must be of type {want}, got {got}"))
    }

    fn locate<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.at(&self.path, self.node.mark))
    }

    fn int_text(&self) -> Result<i128, DeError> {
        match self.node.resolved() {
            Some(Resolved::Int(i)) => Ok(i128::from(i)),
            Some(Resolved::BigInt(t)) => t
                .parse::<i128>()
                .map_err(|_| self.err(format!("integer {t} is out of range"))),
            Some(Resolved::Str(s)) => s
                .trim()
                .parse::<i128>()
                .map_err(|_| self.wrong_type("integer")),
            Some(Resolved::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i128),
            _ => Err(self.wrong_type("integer")),
        }
    }

    fn float(&self) -> Result<f64, DeError> {
        match self.node.resolved() {
            Some(Resolved::Int(i)) => Ok(i as f64),
            Some(Resolved::Float(f)) => Ok(f),
            Some(Resolved::BigInt(t)) => t.parse::<f64>().map_err(|_| self.wrong_type("number")),
            Some(Resolved::Str(s)) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| self.wrong_type("number")),
            _ => Err(self.wrong_type("number")),
        }
    }

    /// Entries of a mapping with repeated keys dropped (last wins) and reported.
    fn entries(&self) -> Vec<&'a (Key, Node)> {
        let Some(map) = self.node.as_map() else {
            return Vec::new();
        };
        let mut out: Vec<&(Key, Node)> = Vec::with_capacity(map.len());
        for (i, entry) in map.iter().enumerate() {
            if map[i + 1..].iter().any(|(k, _)| k.text == entry.0.text) {
                self.sink.borrow_mut().push(Notice::DuplicateKey {
                    path: self.path.field(&entry.0.text),
                    mark: entry.0.mark,
                });
                continue;
            }
            out.push(entry);
        }
        out
    }
}

macro_rules! de_int {
    ($($method:ident => $ty:ty, $visit:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let v = self.int_text()?;
            let v = <$ty>::try_from(v).map_err(|_| self.err(format!("{v} is out of range for {}", stringify!($ty))))?;
            self.locate(visitor.$visit(v))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Scalar(s) => match s.resolve() {
                Resolved::Null => visitor.visit_unit(),
                Resolved::Bool(b) => visitor.visit_bool(b),
                Resolved::Int(i) => visitor.visit_i64(i),
                Resolved::BigInt(t) => match t.parse::<u64>() {
                    Ok(u) => visitor.visit_u64(u),
                    Err(_) => visitor.visit_str(t),
                },
                Resolved::Float(f) => visitor.visit_f64(f),
                Resolved::Str(t) => visitor.visit_str(t),
            },
            NodeKind::Seq(_) => return self.deserialize_seq(visitor),
            NodeKind::Map(_) => return self.deserialize_map(visitor),
        };
        self.locate(r)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.resolved() {
            Some(Resolved::Bool(b)) => self.locate(visitor.visit_bool(b)),
            _ => Err(self.wrong_type("boolean")),
        }
    }

    de_int! {
        deserialize_i8 => i8, visit_i8;
        deserialize_i16 => i16, visit_i16;
        deserialize_i32 => i32, visit_i32;
        deserialize_i64 => i64, visit_i64;
        deserialize_u8 => u8, visit_u8;
        deserialize_u16 => u16, visit_u16;
        deserialize_u32 => u32, visit_u32;
        deserialize_u64 => u64, visit_u64;
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let f = self.float()?;
        self.locate(visitor.visit_f32(f as f32))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let f = self.float()?;
        self.locate(visitor.visit_f64(f))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Scalar(s) if s.resolve() != Resolved::Null => {
                self.locate(visitor.visit_str(&s.text))
            }
            _ => Err(self.wrong_type("string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.as_scalar() {
            Some(s) => self.locate(visitor.visit_bytes(s.text.as_bytes())),
            None => Err(self.wrong_type("string")),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            self.locate(visitor.visit_none())
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.locate(visitor.visit_unit())
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let items: &[Node] = match &self.node.kind {
            NodeKind::Seq(items) => items,
            _ if self.node.is_null() => &[],
            _ => return Err(self.wrong_type("array")),
        };
        let access = SeqAccess {
            parent: &self,
            items,
            next: 0,
        };
        let r = visitor.visit_seq(access);
        self.locate(r)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if !self.node.is_null() && self.node.as_map().is_none() {
            return Err(self.wrong_type("object"));
        }
        let entries = self.entries();
        let access = MapAccess {
            parent: &self,
            entries,
            next: 0,
            value: None,
            as_fields: false,
        };
        let r = visitor.visit_map(access);
        self.locate(r)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if !self.node.is_null() && self.node.as_map().is_none() {
            return Err(self.wrong_type("object"));
        }
        let mut entries = self.entries();
        entries.retain(|(k, _)| {
            let known = fields.contains(&k.text.as_str());
            if !known {
                let did_you_mean = fields
                    .iter()
                    .copied()
                    .find(|f| f.eq_ignore_ascii_case(&k.text));
                self.sink.borrow_mut().push(Notice::UnknownField {
                    path: self.path.field(&k.text),
                    mark: k.mark,
                    did_you_mean,
                });
            }
            known
        });
        let access = MapAccess {
            parent: &self,
            entries,
            next: 0,
            value: None,
            as_fields: true,
        };
        let r = visitor.visit_map(access);
        self.locate(r)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Scalar(s) => {
                let r = visitor.visit_enum(s.text.as_str().into_deserializer());
                self.locate(r)
            }
            NodeKind::Map(m) if m.len() == 1 => {
                let r = visitor.visit_enum(EnumAccess {
                    parent: &self,
                    key: &m[0].0,
                    value: &m[0].1,
                });
                self.locate(r)
            }
            _ => Err(self.wrong_type("string")),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqAccess<'p, 'a> {
    parent: &'p NodeDe<'a>,
    items: &'a [Node],
    next: usize,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(item) = self.items.get(self.next) else {
            return Ok(None);
        };
        let child = self.parent.child(item, PathSeg::Index(self.next));
        self.next += 1;
        let (path, mark) = (child.path.clone(), item.mark);
        seed.deserialize(child)
            .map(Some)
            .map_err(|e| e.at(&path, mark))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.next)
    }
}

struct MapAccess<'p, 'a> {
    parent: &'p NodeDe<'a>,
    entries: Vec<&'a (Key, Node)>,
    next: usize,
    value: Option<&'a (Key, Node)>,
    as_fields: bool,
}

impl<'de> de::MapAccess<'de> for MapAccess<'_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.get(self.next).copied() else {
            return Ok(None);
        };
        self.next += 1;
        self.value = Some(entry);
        let path = self.parent.path.key(&entry.0.text);
        seed.deserialize(KeyDe {
            text: &entry.0.text,
        })
        .map(Some)
        .map_err(|e| e.at(&path, entry.0.mark))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((key, node)) = self.value.take() else {
            return Err(de::Error::custom("value requested before key"));
        };
        let seg = if self.as_fields {
            PathSeg::Field(key.text.clone())
        } else {
            PathSeg::Key(key.text.clone())
        };
        let child = self.parent.child(node, seg);
        let (path, mark) = (child.path.clone(), node.mark);
        seed.deserialize(child).map_err(|e| e.at(&path, mark))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() - self.next)
    }
}

struct EnumAccess<'p, 'a> {
    parent: &'p NodeDe<'a>,
    key: &'a Key,
    value: &'a Node,
}

impl<'de, 'p, 'a> de::EnumAccess<'de> for EnumAccess<'p, 'a> {
    type Error = DeError;
    type Variant = NodeDe<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'a>), DeError> {
        let v = seed.deserialize(KeyDe {
            text: &self.key.text,
        })?;
        Ok((
            v,
            self.parent
                .child(self.value, PathSeg::Field(self.key.text.clone())),
        ))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDe<'_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}

/// Map keys are strings; numeric targets (`map<uint32, ...>`) parse them.
struct KeyDe<'a> {
    text: &'a str,
}

macro_rules! key_int {
    ($($method:ident => $ty:ty, $visit:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let v: $ty = self.text.parse().map_err(|_| {
                de::Error::custom(format!("map key {:?} is not a valid {}", self.text, stringify!($ty)))
            })?;
            visitor.$visit(v)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for KeyDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.text)
    }

    key_int! {
        deserialize_i8 => i8, visit_i8;
        deserialize_i16 => i16, visit_i16;
        deserialize_i32 => i32, visit_i32;
        deserialize_i64 => i64, visit_i64;
        deserialize_u8 => u8, visit_u8;
        deserialize_u16 => u16, visit_u16;
        deserialize_u32 => u32, visit_u32;
        deserialize_u64 => u64, visit_u64;
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_enum(self.text.into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        bool f32 f64 char str string bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::yaml::parse_documents;

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Port {
        number: Option<u32>,
        name: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Spec {
        hosts: Vec<String>,
        ports: Vec<Port>,
        weight: Option<i32>,
        enabled: Option<bool>,
        labels: BTreeMap<String, String>,
        port_level: BTreeMap<u32, String>,
    }

    fn read(src: &str) -> (Result<Spec, DeError>, Vec<Notice>) {
        let docs = parse_documents(src).unwrap();
        let mut notices = Vec::new();
        let r = from_node_at(
            &docs[0].root,
            FieldPath::root().field("spec"),
            Some(&mut notices),
        );
        (r, notices)
    }

    #[test]
    fn strings_keep_source_text_and_numbers_accept_quotes() {
        let (spec, _) = read("hosts: [1.2.3.4, 001:db8::, 80]\nports: [{number: '8080'}]\nlabels: {version: 1.0}\nportLevel: {'80': x}\n");
        let spec = spec.unwrap();
        assert_eq!(spec.hosts, ["1.2.3.4", "001:db8::", "80"]);
        assert_eq!(spec.ports[0].number, Some(8080));
        assert_eq!(spec.labels["version"], "1.0");
        assert_eq!(spec.port_level[&80], "x");
    }

    #[test]
    fn unknown_and_duplicate_keys_are_notices() {
        let (spec, notices) = read("hosts: [a]\nhostz: [b]\nweight: 1\nweight: 2\n");
        assert_eq!(spec.unwrap().weight, Some(2));
        assert_eq!(
            notices,
            vec![
                Notice::DuplicateKey {
                    path: FieldPath::parse("spec.weight"),
                    mark: Mark { line: 3, col: 1 }
                },
                Notice::UnknownField {
                    path: FieldPath::parse("spec.hostz"),
                    mark: Mark { line: 2, col: 1 },
                    did_you_mean: None
                },
            ]
        );
    }

    #[test]
    fn type_errors_name_path_and_line() {
        let (spec, _) = read("hosts: [a]\nports:\n  - number: 80\n  - number: eighty\n");
        let err = spec.unwrap_err();
        assert_eq!(err.path.to_string(), "spec.ports[1].number");
        assert_eq!(err.mark.line, 4);
        assert!(err.message.contains("integer"), "{err}");

        let (spec, _) = read("enabled: \"true\"\n");
        let err = spec.unwrap_err();
        assert_eq!(err.path.to_string(), "spec.enabled");

        let (spec, _) = read("weight: 99999999999\n");
        assert!(spec.unwrap_err().message.contains("out of range"));
    }

    #[test]
    fn null_collections_read_as_empty() {
        let (spec, _) = read("hosts:\nports: ~\n");
        let spec = spec.unwrap();
        assert!(spec.hosts.is_empty() && spec.ports.is_empty());
    }

    #[test]
    fn json_values_keep_types() {
        let docs = parse_documents("a: true\nb: 1\nc: x\nd: 1.5\ne: ~\n").unwrap();
        let v: serde_json::Value = from_node(&docs[0].root, None).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": true, "b": 1, "c": "x", "d": 1.5, "e": null})
        );
    }
}
