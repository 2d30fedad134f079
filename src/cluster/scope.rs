//! What a backup covers: namespaces (globs), resource types (by plural, plural.group or Kind),
//! cluster-scoped resources, and the event types left out by default.

use crate::archive::manifest::Filters;
use crate::cluster::discovery::ResourceType;
use crate::glob::{Glob, GlobError};

/// The filters of a run, compiled.
#[derive(Debug, Clone)]
pub struct Scope {
    include_namespaces: Vec<Glob>,
    exclude_namespaces: Vec<Glob>,
    include_resources: Vec<String>,
    exclude_resources: Vec<String>,
    cluster_resources: bool,
    selector: Option<String>,
}

/// A filter value that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("--include-namespaces/--exclude-namespaces: {0}")]
    Glob(#[from] GlobError),
    #[error("--include-cluster-resources {0:?}: expected auto, true or false")]
    ClusterResources(String),
}

/// Event types hold nothing worth restoring and churn constantly; they are out unless named.
const EVENT_RESOURCES: [&str; 2] = ["events", "events.events.k8s.io"];

impl Scope {
    pub fn new(f: &Filters) -> Result<Scope, ScopeError> {
        let globs = |v: &[String]| {
            v.iter()
                .filter(|s| !s.is_empty())
                .map(|s| Glob::new(s))
                .collect::<Result<Vec<_>, _>>()
        };
        let include_namespaces = globs(&f.include_namespaces)?;
        let whole =
            include_namespaces.is_empty() || include_namespaces.iter().any(|g| g.as_str() == "*");
        let cluster_resources = match f.include_cluster_resources.as_str() {
            "" | "auto" => whole,
            "true" => true,
            "false" => false,
            other => return Err(ScopeError::ClusterResources(other.to_string())),
        };
        let lower = |v: &[String]| {
            v.iter()
                .filter(|s| !s.is_empty())
                .map(|s| s.to_ascii_lowercase())
                .collect::<Vec<_>>()
        };
        Ok(Scope {
            include_namespaces,
            exclude_namespaces: globs(&f.exclude_namespaces)?,
            include_resources: lower(&f.include_resources),
            exclude_resources: lower(&f.exclude_resources),
            cluster_resources,
            selector: f.selector.clone().filter(|s| !s.is_empty()),
        })
    }

    /// All namespaces are in (exclusions aside): the "whole cluster" of `auto`.
    pub fn whole_cluster(&self) -> bool {
        self.include_namespaces.is_empty()
            || self.include_namespaces.iter().any(|g| g.as_str() == "*")
    }

    pub fn include_cluster_resources(&self) -> bool {
        self.cluster_resources
    }

    pub fn selector(&self) -> Option<&str> {
        self.selector.as_deref()
    }

    pub fn namespace_included(&self, ns: &str) -> bool {
        (self.whole_cluster() || self.include_namespaces.iter().any(|g| g.matches(ns)))
            && !self.exclude_namespaces.iter().any(|g| g.matches(ns))
    }

    /// The namespaces to list one by one when the include list names them all literally
    /// (cheaper than listing the whole cluster and dropping most of it).
    pub fn literal_namespaces(&self) -> Option<Vec<String>> {
        if self.whole_cluster() || !self.include_namespaces.iter().all(Glob::is_literal) {
            return None;
        }
        let mut v: Vec<String> = self
            .include_namespaces
            .iter()
            .map(|g| g.as_str().to_string())
            .filter(|ns| self.namespace_included(ns))
            .collect();
        v.sort();
        v.dedup();
        Some(v)
    }

    fn names(list: &[String], t: &ResourceType) -> bool {
        let resource = t.resource();
        let kind = t.kind.to_ascii_lowercase();
        list.iter()
            .any(|x| x == "*" || *x == t.plural || *x == resource || *x == kind)
    }

    /// Whether objects of this type are backed up.
    pub fn type_included(&self, t: &ResourceType) -> bool {
        if Self::names(&self.exclude_resources, t) {
            return false;
        }
        let named = !self.include_resources.is_empty()
            && self.include_resources.iter().any(|x| x != "*")
            && Self::names(&self.include_resources, t);
        if EVENT_RESOURCES.contains(&t.resource().as_str()) && !named {
            return false;
        }
        if !self.include_resources.is_empty()
            && !Self::names(&self.include_resources, t)
            && !is_namespaces(t)
        {
            return false;
        }
        // The Namespace objects of the namespaces in scope always come along: a restore needs
        // them, and they are what a namespace filter selects.
        t.namespaced || is_namespaces(t) || self.cluster_resources
    }
}

pub fn is_namespaces(t: &ResourceType) -> bool {
    t.group.is_empty() && t.plural == "namespaces"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(group: &str, plural: &str, kind: &str, namespaced: bool) -> ResourceType {
        ResourceType {
            group: group.into(),
            version: "v1".into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
        }
    }

    fn scope(f: &Filters) -> Scope {
        Scope::new(f).unwrap()
    }

    #[test]
    fn auto_cluster_resources_follow_the_namespace_filter() {
        let whole = scope(&Filters::default());
        assert!(whole.whole_cluster() && whole.include_cluster_resources());
        assert!(whole.type_included(&ty(
            "rbac.authorization.k8s.io",
            "clusterroles",
            "ClusterRole",
            false
        )));
        let some = scope(&Filters {
            include_namespaces: vec!["shop".into()],
            ..Filters::default()
        });
        assert!(!some.include_cluster_resources());
        assert!(!some.type_included(&ty(
            "rbac.authorization.k8s.io",
            "clusterroles",
            "ClusterRole",
            false
        )));
        assert!(some.type_included(&ty("", "namespaces", "Namespace", false)));
        let forced = scope(&Filters {
            include_namespaces: vec!["shop".into()],
            include_cluster_resources: "true".into(),
            ..Filters::default()
        });
        assert!(forced.type_included(&ty(
            "storage.k8s.io",
            "storageclasses",
            "StorageClass",
            false
        )));
        let none = scope(&Filters {
            include_cluster_resources: "false".into(),
            ..Filters::default()
        });
        assert!(!none.type_included(&ty(
            "storage.k8s.io",
            "storageclasses",
            "StorageClass",
            false
        )));
        assert!(
            Scope::new(&Filters {
                include_cluster_resources: "maybe".into(),
                ..Filters::default()
            })
            .is_err()
        );
    }

    #[test]
    fn namespace_globs_and_exclusions() {
        let s = scope(&Filters {
            include_namespaces: vec!["team-*".into(), "shop".into()],
            exclude_namespaces: vec!["team-tmp*".into()],
            ..Filters::default()
        });
        assert!(s.namespace_included("team-a") && s.namespace_included("shop"));
        assert!(!s.namespace_included("team-tmp1") && !s.namespace_included("kube-system"));
        assert_eq!(s.literal_namespaces(), None);
        let lit = scope(&Filters {
            include_namespaces: vec!["b".into(), "a".into()],
            exclude_namespaces: vec!["b".into()],
            ..Filters::default()
        });
        assert_eq!(lit.literal_namespaces(), Some(vec!["a".to_string()]));
        let whole = scope(&Filters {
            exclude_namespaces: vec!["kube-*".into()],
            ..Filters::default()
        });
        assert!(
            whole.whole_cluster()
                && !whole.namespace_included("kube-system")
                && whole.namespace_included("default")
        );
    }

    #[test]
    fn resources_by_plural_group_or_kind_and_events_out_by_default() {
        let cm = ty("", "configmaps", "ConfigMap", true);
        let deploy = ty("apps", "deployments", "Deployment", true);
        let events = ty("", "events", "Event", true);
        let s = scope(&Filters::default());
        assert!(s.type_included(&cm) && !s.type_included(&events));
        assert!(!s.type_included(&ty("events.k8s.io", "events", "Event", true)));
        for token in ["deployments", "deployments.apps", "Deployment"] {
            let s = scope(&Filters {
                include_resources: vec![token.into()],
                ..Filters::default()
            });
            assert!(s.type_included(&deploy) && !s.type_included(&cm), "{token}");
        }
        let s = scope(&Filters {
            exclude_resources: vec!["configmaps".into()],
            ..Filters::default()
        });
        assert!(!s.type_included(&cm) && s.type_included(&deploy));
        let s = scope(&Filters {
            include_resources: vec!["events".into()],
            ..Filters::default()
        });
        assert!(s.type_included(&events));
    }
}
