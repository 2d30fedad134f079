//! Fault injection for reliability tests: per path pattern, a fixed error, added latency, a
//! dropped connection, or an expired continue token.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a matching request gets.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Answer with this HTTP status and a matching `Status` body; `retry_after` sets the
    /// `Retry-After` header (seconds), as a throttling apiserver does with 429.
    Status { code: u16, retry_after: Option<u32> },
    /// Wait this long, then serve the request normally.
    Latency(Duration),
    /// Close the connection without answering.
    DropConnection,
    /// Answer a request carrying `continue=` with 410 Expired and the inconsistent token, as
    /// after an etcd compaction. Requests without a continue token pass.
    ExpireContinue,
}

/// One injected fault. Build with [`Fault::new`] and the chainable setters.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Glob over the request path: `*` matches any run of characters, including `/`.
    pub path: String,
    /// Only this HTTP method (`GET`, `POST`, ...); `None` for all.
    pub method: Option<String>,
    /// Only requests whose query string contains this text (e.g. `watch=true`).
    pub query_contains: Option<String>,
    pub action: FaultAction,
    /// Fire at most this many times; `None` for ever.
    pub times: Option<u64>,
    /// Fire with this probability (0.0-1.0) for each matching request.
    pub probability: f64,
    /// Fire on every n-th matching request only (1 in n, deterministically, so that a test
    /// of "a quarter of all requests fail" cannot flake on a run of bad luck).
    pub every: Option<u64>,
    /// Matching requests seen so far, for `every`.
    seen: u64,
}

impl Fault {
    pub fn new(path: impl Into<String>, action: FaultAction) -> Self {
        Fault {
            path: path.into(),
            method: None,
            query_contains: None,
            action,
            times: None,
            probability: 1.0,
            every: None,
            seen: 0,
        }
    }

    /// Shorthand for a fixed status.
    pub fn status(path: impl Into<String>, code: u16) -> Self {
        Self::new(
            path,
            FaultAction::Status {
                code,
                retry_after: None,
            },
        )
    }

    #[must_use]
    pub fn method(mut self, m: &str) -> Self {
        self.method = Some(m.to_ascii_uppercase());
        self
    }

    #[must_use]
    pub fn query_contains(mut self, q: &str) -> Self {
        self.query_contains = Some(q.to_string());
        self
    }

    #[must_use]
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    /// Fires on the n-th, 2n-th, ... matching request (`every(4)`: 25% of them).
    #[must_use]
    pub fn every(mut self, n: u64) -> Self {
        self.every = Some(n.max(1));
        self
    }

    #[must_use]
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = p.clamp(0.0, 1.0);
        self
    }

    fn applies(&self, method: &str, path: &str, query: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self
                .query_contains
                .as_deref()
                .is_none_or(|q| query.contains(q))
            && (self.action != FaultAction::ExpireContinue || query.contains("continue="))
            && glob(&self.path, path)
    }
}

/// Handle to remove a fault again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultId(u64);

#[derive(Debug, Default)]
pub(crate) struct Faults {
    next: AtomicU64,
    list: Mutex<Vec<(FaultId, Fault, u64)>>,
}

/// What the server should do with one request.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    pub latency: Duration,
    pub action: Option<FaultAction>,
}

impl Faults {
    pub fn add(&self, f: Fault) -> FaultId {
        let id = FaultId(self.next.fetch_add(1, Ordering::Relaxed));
        self.lock().push((id, f, 0));
        id
    }

    pub fn remove(&self, id: FaultId) {
        self.lock().retain(|(i, _, _)| *i != id);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(FaultId, Fault, u64)>> {
        self.list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decides the faults of one request: latencies add up, the first other action wins.
    pub fn decide(&self, method: &str, path: &str, query: &str) -> Decision {
        let mut d = Decision::default();
        let mut list = self.lock();
        for (_, f, fired) in list.iter_mut() {
            if !f.applies(method, path, query) || f.times.is_some_and(|n| *fired >= n) {
                continue;
            }
            if let Some(n) = f.every {
                f.seen += 1;
                if f.seen % n != 0 {
                    continue;
                }
            }
            if f.probability < 1.0 && rand::random::<f64>() >= f.probability {
                continue;
            }
            match &f.action {
                FaultAction::Latency(l) => {
                    *fired += 1;
                    d.latency += *l;
                }
                other if d.action.is_none() => {
                    *fired += 1;
                    d.action = Some(other.clone());
                }
                _ => {}
            }
        }
        d
    }
}

/// `*` matches any run of characters (including `/`); everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(idx) => rest = &rest[idx + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_runs() {
        assert!(glob("/api/v1/*", "/api/v1/namespaces/a/secrets"));
        assert!(glob("*/secrets", "/api/v1/namespaces/a/secrets"));
        assert!(glob(
            "/apis/*/deployments*",
            "/apis/apps/v1/namespaces/x/deployments"
        ));
        assert!(!glob("/apis/*/deployments", "/api/v1/pods"));
        assert!(glob("/version", "/version") && !glob("/version", "/versions"));
    }

    #[test]
    fn times_and_continue_are_honoured() {
        let f = Faults::default();
        f.add(Fault::new("/api/v1/configmaps", FaultAction::ExpireContinue).times(1));
        assert!(
            f.decide("GET", "/api/v1/configmaps", "limit=500")
                .action
                .is_none()
        );
        assert_eq!(
            f.decide("GET", "/api/v1/configmaps", "limit=500&continue=x")
                .action,
            Some(FaultAction::ExpireContinue)
        );
        assert!(
            f.decide("GET", "/api/v1/configmaps", "limit=500&continue=x")
                .action
                .is_none()
        );
    }
}
