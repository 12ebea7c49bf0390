//! Path normalization, in Envoy's order and before anything routes or authorizes on the
//! path (the upstream sees the normalized path too): the connection manager's
//! `path_with_escaped_slashes_action` first (`%2F`/`%5C`), then `normalize_path` (RFC 3986
//! dot segments; percent-encoded unreserved characters decoded; other escapes upper-cased;
//! `\` read as `/`, as Envoy's URL canonicalizer does), then `merge_slashes`. The query is
//! never touched. Istio's MeshConfig `pathNormalization` picks these three settings.

/// What the connection manager asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathOptions {
    pub normalize: bool,
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashes,
}

/// Envoy's `PathWithEscapedSlashesAction`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EscapedSlashes {
    #[default]
    Keep,
    Reject,
    UnescapeAndRedirect,
    UnescapeAndForward,
}

/// The outcome for one request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Normalized {
    /// Route and forward this path (with its query).
    Path(String),
    /// Answer 400 (an escaped slash under REJECT_REQUEST, or a path that cannot be read).
    Reject,
    /// Answer a redirect to this path (UNESCAPE_AND_REDIRECT changed it).
    Redirect(String),
}

/// Normalizes `path_and_query` per `o`.
pub fn normalize(path_and_query: &str, o: &PathOptions) -> Normalized {
    let (path, query) = match path_and_query.bytes().position(|c| c == b'?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    if already_normal(path, o) {
        return Normalized::Path(path_and_query.to_string());
    }
    let mut path = path.to_string();
    let mut redirect = false;
    if o.escaped_slashes != EscapedSlashes::Keep && has_escaped_slash(&path) {
        match o.escaped_slashes {
            EscapedSlashes::Reject => return Normalized::Reject,
            EscapedSlashes::UnescapeAndRedirect => redirect = true,
            _ => {}
        }
        path = unescape_slashes(&path);
    }
    if o.normalize {
        match canonical(&path) {
            Some(p) => path = p,
            None => return Normalized::Reject,
        }
    }
    if o.merge_slashes {
        path = merge_slashes(&path);
    }
    let out = format!("{path}{query}");
    if redirect {
        Normalized::Redirect(out)
    } else {
        Normalized::Path(out)
    }
}

/// A path every option leaves as it is (most requests): absolute, no escapes, no `\`, no
/// `.` or `..` segment, and no `//` when slashes are merged. One pass over the bytes.
fn already_normal(path: &str, o: &PathOptions) -> bool {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    let dot = |seg: &[u8]| seg == b"." || seg == b"..";
    let mut seg_start = 1;
    for (i, &c) in b.iter().enumerate().skip(1) {
        match c {
            b'%' | b'\\' => return false,
            b'/' => {
                let seg = &b[seg_start..i];
                if dot(seg) || (o.merge_slashes && seg.is_empty()) {
                    return false;
                }
                seg_start = i + 1;
            }
            _ => {}
        }
    }
    !dot(&b[seg_start..])
}

fn has_escaped_slash(p: &str) -> bool {
    let b = p.as_bytes();
    b.windows(3).any(|w| {
        w[0] == b'%' && (w[1] == b'2' && matches!(w[2], b'f' | b'F'))
            || (w[0] == b'%' && w[1] == b'5' && matches!(w[2], b'c' | b'C'))
    })
}

fn unescape_slashes(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            match (b[i + 1], b[i + 2].to_ascii_uppercase()) {
                (b'2', b'F') => {
                    out.push('/');
                    i += 3;
                    continue;
                }
                (b'5', b'C') => {
                    out.push('\\');
                    i += 3;
                    continue;
                }
                _ => {}
            }
        }
        out.push(char::from(b[i]));
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Escapes read, `\` as `/`, dot segments removed; `None` for a path that does not start
/// with `/` or has a broken escape.
fn canonical(p: &str) -> Option<String> {
    let b = p.as_bytes();
    if b.first() != Some(&b'/') && b.first() != Some(&b'\\') {
        return None;
    }
    let mut decoded = String::with_capacity(p.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let (h, l) = (hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?);
                let c = h * 16 + l;
                if unreserved(c) {
                    decoded.push(char::from(c));
                } else {
                    decoded.push('%');
                    decoded.push(char::from(b[i + 1].to_ascii_uppercase()));
                    decoded.push(char::from(b[i + 2].to_ascii_uppercase()));
                }
                i += 3;
            }
            b'\\' => {
                decoded.push('/');
                i += 1;
            }
            c => {
                decoded.push(char::from(c));
                i += 1;
            }
        }
    }
    Some(remove_dot_segments(&decoded))
}

/// RFC 3986 section 5.2.4, on an absolute path.
fn remove_dot_segments(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = p.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, s) in segments.iter().enumerate() {
        match *s {
            "." => trailing_slash = i == last,
            ".." => {
                out.pop();
                trailing_slash = i == last;
            }
            _ => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut r = String::with_capacity(p.len());
    for s in &out {
        r.push('/');
        r.push_str(s);
    }
    if trailing_slash || r.is_empty() {
        r.push('/');
    }
    r
}

fn merge_slashes(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let mut prev_slash = false;
    for c in p.chars() {
        if c == '/' && prev_slash {
            continue;
        }
        prev_slash = c == '/';
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> PathOptions {
        PathOptions {
            normalize: true,
            ..Default::default()
        }
    }

    #[test]
    fn the_fast_path_takes_only_paths_the_full_normalization_leaves_alone() {
        let paths = [
            "/", "/a/b", "/a//b", "/a/b/", "/a/.b", "/a/..b", "/a/./b", "/a/../b", "/a/.", "/%41",
            "/a\\b", "a/b", "//a", "/.", "/..", "/./a", "/a/..", "/a/b//",
        ];
        for o in [base(), decode_and_merge(), PathOptions::default()] {
            for p in paths {
                if !already_normal(p, &o) {
                    continue;
                }
                let mut full = p.to_string();
                if o.normalize {
                    full = canonical(&full).unwrap();
                }
                if o.merge_slashes {
                    full = merge_slashes(&full);
                }
                assert_eq!(full, p, "{o:?}");
            }
        }
        assert!(already_normal("/a/.b", &base()) && !already_normal("/a/./b", &base()));
        assert!(!already_normal("/a//b", &decode_and_merge()));
        assert!(already_normal("/a//b", &base()));
        for p in ["/", "/a/b", "/a/b/", "/a/..b"] {
            assert!(already_normal(p, &decode_and_merge()), "{p}");
        }
        for p in ["/.", "/..", "/./a", "/a/..", "/a/b//", "//a"] {
            assert!(!already_normal(p, &decode_and_merge()), "{p}");
        }
    }

    fn decode_and_merge() -> PathOptions {
        PathOptions {
            normalize: true,
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::UnescapeAndForward,
        }
    }

    fn path(n: Normalized) -> String {
        match n {
            Normalized::Path(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn base_removes_dot_segments_and_reads_unreserved_escapes() {
        for (given, want) in [
            ("/a/../exact", "/exact"),
            ("/./exact", "/exact"),
            ("/a/b/../../c?x=/../y", "/c?x=/../y"),
            ("/%61dmin", "/admin"),
            ("/a/%2e%2e/b", "/b"),
            ("/x%2fy", "/x%2Fy"),
            ("/a\\..\\b", "/b"),
            ("/a/./", "/a/"),
            ("/a/..", "/"),
            ("/", "/"),
            ("//admin", "//admin"),
        ] {
            assert_eq!(path(normalize(given, &base())), want, "{given}");
        }
        assert_eq!(normalize("/bad%zz", &base()), Normalized::Reject);
        assert_eq!(normalize("relative", &base()), Normalized::Reject);
    }

    #[test]
    fn decode_and_merge_slashes_closes_the_escaped_slash_bypasses() {
        for (given, want) in [
            ("//admin", "/admin"),
            ("/admin%2Fx", "/admin/x"),
            ("/admin%2fx", "/admin/x"),
            ("/admin%5Cx", "/admin/x"),
            ("/x/%2E%2E/admin", "/admin"),
        ] {
            assert_eq!(path(normalize(given, &decode_and_merge())), want, "{given}");
        }
    }

    #[test]
    fn escaped_slash_actions() {
        let o = |a| PathOptions {
            escaped_slashes: a,
            ..Default::default()
        };
        assert_eq!(
            normalize("/a%2Fb", &o(EscapedSlashes::Reject)),
            Normalized::Reject
        );
        assert_eq!(
            normalize("/a%2Fb?q", &o(EscapedSlashes::UnescapeAndRedirect)),
            Normalized::Redirect("/a/b?q".to_string())
        );
        assert_eq!(
            path(normalize("/a%2Fb", &o(EscapedSlashes::Keep))),
            "/a%2Fb"
        );
        // Nothing asked for: the path is left exactly as sent.
        assert_eq!(
            path(normalize("/a/../b//c", &PathOptions::default())),
            "/a/../b//c"
        );
    }
}
