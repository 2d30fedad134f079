//! Object name rules, with the apiserver's wording.

use crate::registry::NameRule;

const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// Checks a name against its kind's rule; `Err` holds the cause text after `metadata.name: `.
pub fn name(rule: NameRule, name: &str) -> Result<(), String> {
    let invalid = |why: &str| Err(format!("Invalid value: \"{name}\": {why}"));
    match rule {
        NameRule::PathSegment => {
            if name == "." || name == ".." {
                return invalid(&format!("may not be '{name}'"));
            }
            for bad in ["/", "%"] {
                if name.contains(bad) {
                    return invalid(&format!("may not contain '{bad}'"));
                }
            }
            Ok(())
        }
        NameRule::Subdomain => {
            if name.len() > 253 {
                return invalid("must be no more than 253 characters");
            }
            if !name.split('.').all(is_label) {
                return invalid(SUBDOMAIN);
            }
            Ok(())
        }
        NameRule::Label => {
            if name.len() > 63 {
                return invalid("must be no more than 63 characters");
            }
            if !is_label(name) {
                return invalid(LABEL);
            }
            Ok(())
        }
        NameRule::Dns1035 => {
            if name.len() > 63 {
                return invalid("must be no more than 63 characters");
            }
            if !is_label(name) || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
                return invalid(DNS1035);
            }
            Ok(())
        }
    }
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_per_kind() {
        assert!(name(NameRule::Subdomain, "web.example-1").is_ok());
        assert!(name(NameRule::Subdomain, &"a".repeat(253)).is_ok());
        assert!(name(NameRule::Subdomain, &"a".repeat(254)).is_err());
        assert!(
            name(NameRule::Subdomain, "Bad_Name")
                .unwrap_err()
                .starts_with("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain")
        );
        assert!(name(NameRule::PathSegment, "system:aggregated-metrics-reader").is_ok());
        assert!(name(NameRule::PathSegment, "a/b").is_err());
        assert!(name(NameRule::Label, "kube-system").is_ok());
        assert!(name(NameRule::Label, "a.b").is_err());
        assert!(name(NameRule::Dns1035, "1web").is_err());
        assert!(name(NameRule::Dns1035, "web-1").is_ok());
    }
}
