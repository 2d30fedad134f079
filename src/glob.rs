//! Shell-style globs for namespace filters: `*` (any run), `?` (one character), `[abc]`,
//! `[a-z]` and `[!abc]`. Kubernetes names are ASCII, so matching works on bytes.

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
}

/// A malformed pattern (an unclosed `[`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid glob {pattern:?}: {why}")]
pub struct GlobError {
    pub pattern: String,
    pub why: &'static str,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, GlobError> {
        let bytes = pattern.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'[' {
                match bytes[i + 1..].iter().position(|&b| b == b']') {
                    Some(end) if end > 0 => i += end + 1,
                    _ => {
                        return Err(GlobError {
                            pattern: pattern.to_string(),
                            why: "unclosed '['",
                        });
                    }
                }
            }
            i += 1;
        }
        Ok(Glob {
            pattern: pattern.to_string(),
        })
    }

    /// Whether the pattern has wildcards (a literal pattern names exactly one namespace, which
    /// lets the collector list that namespace instead of the whole cluster).
    pub fn is_literal(&self) -> bool {
        !self.pattern.contains(['*', '?', '['])
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    pub fn matches(&self, text: &str) -> bool {
        matches(self.pattern.as_bytes(), text.as_bytes())
    }
}

impl std::fmt::Display for Glob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// Iterative matcher with single-star backtracking: linear in practice, no recursion.
fn matches(p: &[u8], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(p, pi, t[ti])
                        && matched
                    {
                        pi = next;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `p[start] == b'['`; returns (matched, index after `]`).
fn class(p: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = p.get(i) == Some(&b'!') || p.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() && (p[i] != b']' || first) {
        first = false;
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            matched |= (p[i]..=p[i + 2]).contains(&c);
            i += 3;
        } else {
            matched |= p[i] == c;
            i += 1;
        }
    }
    (i < p.len()).then_some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Glob::new(p).unwrap().matches(t)
    }

    #[test]
    fn wildcards_and_classes() {
        assert!(m("kube-*", "kube-system") && !m("kube-*", "kubesystem"));
        assert!(m("*", "") && m("*", "anything"));
        assert!(m("team-?", "team-a") && !m("team-?", "team-ab"));
        assert!(m("prod-[ab]*", "prod-a1") && !m("prod-[ab]*", "prod-c1"));
        assert!(m("ns[0-9]", "ns7") && !m("ns[!0-9]", "ns7"));
        assert!(m("*-staging-*", "shop-staging-eu"));
        assert!(m("a*b*c", "aXXbYYc") && !m("a*b*c", "aXXbYY"));
        assert!(Glob::new("x[").is_err());
        assert!(
            Glob::new("shop").unwrap().is_literal() && !Glob::new("sh*p").unwrap().is_literal()
        );
    }
}
