//! The subset of OpenAPI v3 (plus Kubernetes' extensions) that Istio's CRDs use.
//!
//! Unknown keywords are refused when `schema.json` is loaded: a regenerated schema that
//! starts using a new keyword must get a check here rather than be silently ignored.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SchemaFile {
    #[allow(dead_code)]
    pub generated_by: String,
    pub kinds: Vec<KindSchema>,
}

// Group and versions are read by tests, which keep `istio::KINDS` and this file in step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct KindSchema {
    pub group: String,
    pub kind: String,
    pub versions: Vec<String>,
    pub storage_version: String,
    pub spec_required: bool,
    pub spec: Schema,
}

/// All kinds' schemas, by kind.
pub(crate) struct Schemas {
    pub by_kind: HashMap<String, KindSchema>,
}

impl Schemas {
    pub(crate) fn parse(json: &str) -> Result<Self, serde_json::Error> {
        let file: SchemaFile = serde_json::from_str(json)?;
        Ok(Schemas {
            by_kind: file
                .kinds
                .into_iter()
                .map(|k| (k.kind.clone(), k))
                .collect(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Type {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl Type {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Type::Object => "object",
            Type::Array => "array",
            Type::String => "string",
            Type::Integer => "integer",
            Type::Number => "number",
            Type::Boolean => "boolean",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Schema {
    #[serde(rename = "type")]
    pub ty: Option<Type>,
    #[serde(default)]
    pub properties: BTreeMap<String, Schema>,
    pub items: Option<Box<Schema>>,
    pub additional_properties: Option<Box<Schema>>,
    #[serde(default)]
    pub required: Vec<String>,
    #[serde(default, rename = "enum")]
    pub enum_values: Vec<serde_json::Value>,
    pub format: Option<String>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    #[serde(default)]
    pub exclusive_minimum: bool,
    #[serde(default)]
    pub exclusive_maximum: bool,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub pattern: Option<Pattern>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub min_properties: Option<u64>,
    pub max_properties: Option<u64>,
    #[serde(default)]
    pub nullable: bool,
    #[serde(default)]
    pub one_of: Vec<Schema>,
    #[serde(default)]
    pub any_of: Vec<Schema>,
    #[serde(default)]
    pub all_of: Vec<Schema>,
    pub not: Option<Box<Schema>>,
    #[serde(default, rename = "x-kubernetes-int-or-string")]
    pub int_or_string: bool,
    /// Unknown fields are never reported by this layer, kept or not; read so that the
    /// keyword is known.
    #[allow(dead_code)]
    #[serde(default, rename = "x-kubernetes-preserve-unknown-fields")]
    pub preserve_unknown_fields: bool,
    #[serde(default, rename = "x-kubernetes-validations")]
    pub validations: Vec<ValidationRule>,
    #[serde(rename = "x-kubernetes-list-type")]
    pub list_type: Option<ListType>,
    #[serde(default, rename = "x-kubernetes-list-map-keys")]
    pub list_map_keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ListType {
    Atomic,
    Set,
    Map,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValidationRule {
    pub rule: String,
    pub message: Option<String>,
}

impl ValidationRule {
    /// What Kubernetes reports when the rule fails: its message, else the rule itself.
    pub(crate) fn message(&self) -> &str {
        self.message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .unwrap_or(self.rule.trim())
    }
}

/// A `pattern`, compiled once when the schema is loaded. Kubernetes uses Go's RE2 syntax,
/// which the `regex` crate shares (no backreferences or lookaround in either).
pub(crate) struct Pattern {
    pub source: String,
    pub regex: Regex,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        let regex = Regex::new(&source).map_err(|e| {
            serde::de::Error::custom(format!("pattern {source:?} does not compile: {e}"))
        })?;
        Ok(Pattern { source, regex })
    }
}

impl Schema {
    /// Every schema below this one, this one first.
    #[cfg(test)]
    pub(crate) fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Schema)) {
        f(self);
        for s in self.properties.values() {
            s.walk(f);
        }
        for s in self
            .items
            .iter()
            .chain(&self.additional_properties)
            .chain(&self.not)
        {
            s.walk(f);
        }
        for s in self.one_of.iter().chain(&self.any_of).chain(&self.all_of) {
            s.walk(f);
        }
    }

    /// Istio's "at most one of" idiom, which protoc-gen-crd emits for proto `oneof`s:
    /// `oneOf: [{not: {anyOf: [{required: [a]}, {required: [b]}]}}, {required: [a]}, {required: [b]}]`.
    /// Returns the fields `[a, b]`.
    pub(crate) fn at_most_one_of(&self) -> Option<Vec<&str>> {
        let (first, rest) = self.one_of.split_first()?;
        let none = first.not.as_ref()?;
        fn names_of(alts: &[Schema]) -> Option<Vec<&str>> {
            alts.iter()
                .map(|s| match s.required.as_slice() {
                    [one] if s.is_only_required() => Some(one.as_str()),
                    _ => None,
                })
                .collect()
        }
        if !first.is_only_not() || !none.is_only_any_of() {
            return None;
        }
        let listed = names_of(&none.any_of)?;
        let alternatives = names_of(rest)?;
        (listed == alternatives && !listed.is_empty()).then_some(listed)
    }

    fn is_only_required(&self) -> bool {
        self.ty.is_none()
            && self.properties.is_empty()
            && self.one_of.is_empty()
            && self.any_of.is_empty()
            && self.all_of.is_empty()
            && self.not.is_none()
            && self.validations.is_empty()
    }

    fn is_only_not(&self) -> bool {
        self.ty.is_none()
            && self.required.is_empty()
            && self.one_of.is_empty()
            && self.any_of.is_empty()
            && self.all_of.is_empty()
    }

    fn is_only_any_of(&self) -> bool {
        self.ty.is_none()
            && self.required.is_empty()
            && self.one_of.is_empty()
            && self.all_of.is_empty()
            && self.not.is_none()
    }
}
