//! Field paths in Kubernetes' notation: `spec.http[0].route[1].weight`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathSeg {
    /// A struct field: rendered `.name`.
    Field(String),
    /// A key of a map: rendered `[key]`.
    Key(String),
    /// A list index: rendered `[i]`.
    Index(usize),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(Vec<PathSeg>);

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// Parses `spec.http[0].route` (map keys in brackets that are not numbers become keys).
    pub fn parse(s: &str) -> Self {
        let mut out = Vec::new();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let (name, rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !name.is_empty() {
                out.push(PathSeg::Field(name.to_string()));
            }
            for idx in rest.split('[').filter(|x| !x.is_empty()) {
                let idx = idx.trim_end_matches(']');
                match idx.parse::<usize>() {
                    Ok(i) => out.push(PathSeg::Index(i)),
                    Err(_) => out.push(PathSeg::Key(idx.to_string())),
                }
            }
        }
        FieldPath(out)
    }

    pub fn segments(&self) -> &[PathSeg] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn field(&self, name: &str) -> Self {
        let mut p = self.clone();
        p.0.push(PathSeg::Field(name.to_string()));
        p
    }

    pub fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(PathSeg::Key(key.to_string()));
        p
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(PathSeg::Index(i));
        p
    }

    pub fn push(&mut self, seg: PathSeg) {
        self.0.push(seg);
    }

    pub fn pop(&mut self) {
        self.0.pop();
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                PathSeg::Field(n) if i == 0 => write!(f, "{n}")?,
                PathSeg::Field(n) => write!(f, ".{n}")?,
                PathSeg::Key(k) => write!(f, "[{k}]")?,
                PathSeg::Index(idx) => write!(f, "[{idx}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses() {
        let p = FieldPath::root()
            .field("spec")
            .field("http")
            .index(0)
            .field("route")
            .index(1)
            .field("weight");
        assert_eq!(p.to_string(), "spec.http[0].route[1].weight");
        assert_eq!(FieldPath::parse("spec.http[0].route[1].weight"), p);
        let m = FieldPath::root()
            .field("spec")
            .field("portLevelMtls")
            .key("80x");
        assert_eq!(m.to_string(), "spec.portLevelMtls[80x]");
    }
}
