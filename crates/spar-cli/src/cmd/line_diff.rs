//! A line diff (longest common subsequence) printed unified-style: ` ` kept, `-` old, `+`
//! new. Inputs are one resource's summary lines (tens of lines), so the quadratic table is
//! cheap and keeps this dependency-free.

/// `old` → `new` as prefixed lines, every line shown (summaries are short; full context
/// reads better than hunks here).
pub fn unified(old: &[String], new: &[String]) -> Vec<String> {
    let (n, m) = (old.len(), new.len());
    // lcs[i][j]: length of the longest common subsequence of old[i..] and new[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if old[i] == new[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            out.push(format!(" {}", old[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removals before additions on a tie, as diff prints them.
            out.push(format!("-{}", old[i]));
            i += 1;
        } else {
            out.push(format!("+{}", new[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(str::to_string).collect()
    }

    #[test]
    fn changed_lines_show_as_minus_then_plus() {
        let d = unified(&lines("a\nb\nc"), &lines("a\nB\nc\nd"));
        assert_eq!(d, [" a", "-b", "+B", " c", "+d"]);
        assert!(unified(&lines("x"), &lines("x"))
            .iter()
            .all(|l| l.starts_with(' ')));
        assert_eq!(unified(&lines("x\ny"), &lines("z\ny")), ["-x", "+z", " y"]);
    }
}
