//! Label selectors evaluated by lifeboat itself (restore filters objects read from an archive,
//! where no API server does it): `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

/// A parsed selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    terms: Vec<(String, Op)>,
}

/// A selector that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--selector {selector:?}: {why}; write it like app=web,tier!=db or env in (prod,staging)")]
pub struct SelectorError {
    pub selector: String,
    pub why: String,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let err = |why: String| SelectorError {
            selector: text.to_string(),
            why,
        };
        let mut terms = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            // A term ends at the first comma outside parentheses.
            let mut depth = 0i32;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    c == ',' && depth == 0
                })
                .map_or(rest.len(), |(i, _)| i);
            let term = rest[..end].trim();
            rest = rest[end..].trim_start_matches(',').trim();
            if term.is_empty() {
                return Err(err("an empty requirement".into()));
            }
            terms.push(term_of(term).map_err(err)?);
        }
        Ok(Selector { terms })
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let label = |k: &str| {
            obj.pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
        };
        self.terms.iter().all(|(key, op)| match (op, label(key)) {
            (Op::Equals(v), Some(x)) => x == v,
            (Op::NotEquals(v), x) => x != Some(v.as_str()),
            (Op::In(vs), Some(x)) => vs.iter().any(|v| v == x),
            (Op::NotIn(vs), x) => x.is_none_or(|x| vs.iter().all(|v| v != x)),
            (Op::Exists, x) => x.is_some(),
            (Op::DoesNotExist, x) => x.is_none(),
            (Op::Equals(_) | Op::In(_), None) => false,
        })
    }
}

fn term_of(term: &str) -> Result<(String, Op), String> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok((key.trim().to_string(), Op::DoesNotExist));
    }
    for (sep, neg) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((k, v)) = term.split_once(sep) {
            let (k, v) = (k.trim().to_string(), v.trim().to_string());
            if k.is_empty() || v.contains(['=', '!', '(', ')', ' ']) {
                return Err(format!("cannot read {term:?}"));
            }
            return Ok((k, if neg { Op::NotEquals(v) } else { Op::Equals(v) }));
        }
    }
    if let Some((k, set)) = term
        .split_once(" notin ")
        .map(|(k, s)| (k, (s, true)))
        .or_else(|| term.split_once(" in ").map(|(k, s)| (k, (s, false))))
    {
        let (list, negated) = set;
        let inner = list
            .trim()
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or_else(|| format!("{term:?}: the values go in parentheses"))?;
        let values: Vec<String> = inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        return Ok((
            k.trim().to_string(),
            if negated {
                Op::NotIn(values)
            } else {
                Op::In(values)
            },
        ));
    }
    if term.contains([' ', '(', ')', '=']) {
        return Err(format!("cannot read {term:?}"));
    }
    Ok((term.to_string(), Op::Exists))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requirements_combine_with_and() {
        let o = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}});
        let yes = |s: &str| Selector::parse(s).unwrap().matches(&o);
        assert!(
            yes("app=web") && yes("app==web,tier!=db") && yes("app in (web, api)") && yes("tier")
        );
        assert!(yes("!missing") && yes("missing notin (x)") && yes("missing!=x") && yes(""));
        assert!(
            !yes("app=api") && !yes("missing in (x)") && !yes("!app") && !yes("app notin (web)")
        );
        assert!(Selector::parse("app in web").is_err());
        assert!(Selector::parse("a=b=c").is_err());
        assert!(
            !Selector::parse("app")
                .unwrap()
                .matches(&json!({"metadata": {}}))
        );
    }
}
