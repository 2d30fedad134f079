//! Retries for Kubernetes API calls: 429 (honouring Retry-After), 5xx, timeouts and dropped
//! connections are retried with jittered exponential backoff, at least five attempts, within a
//! bounded total time. Everything else is permanent and fails at once.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::cluster::ClusterError;
use crate::events::{Event, Observers};

/// How hard to try.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Attempts in all, the first included (the contract's minimum is 5).
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No new attempt starts after this much time since the first.
    pub budget: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            budget: Duration::from_mins(2),
        }
    }
}

/// How long the server asked us to wait before retrying, if it said.
pub fn retry_after(e: &ClusterError) -> Option<Duration> {
    match e {
        ClusterError::Api { retry_after, .. } => *retry_after,
        _ => None,
    }
}

/// Runs `f` until it succeeds, fails permanently, or the policy is exhausted.
pub async fn with_retry<T, F, Fut>(
    policy: &Policy,
    what: &str,
    observers: &Observers,
    mut f: F,
) -> Result<T, ClusterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClusterError>>,
{
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e)
                if e.is_retryable()
                    && attempt < policy.attempts
                    && started.elapsed() < policy.budget =>
            {
                let backoff = policy
                    .base_delay
                    .saturating_mul(1 << (attempt - 1).min(16))
                    .min(policy.max_delay);
                // Full jitter spreads the retries of many concurrent lists apart.
                let jittered = backoff.mul_f64(rand::random_range(0.5..=1.0));
                let delay = retry_after(&e)
                    .map_or(jittered, |d| d.min(policy.max_delay * 3))
                    .min(policy.budget.saturating_sub(started.elapsed()));
                observers.emit(&Event::Retrying {
                    what: what.to_string(),
                    attempt,
                    message: e.to_string(),
                });
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Turns a kube-rs error into a [`ClusterError`], deciding whether it is worth retrying.
pub fn classify(what: &str, e: &kube::Error) -> ClusterError {
    match e {
        kube::Error::Api(status) => {
            let after = status
                .details
                .as_ref()
                .map(|d| d.retry_after_seconds)
                .filter(|s| *s > 0);
            from_status(
                what,
                status.code,
                &status.message,
                after.map(|s| Duration::from_secs(u64::from(s))),
            )
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => ClusterError::Api {
            what: what.to_string(),
            code: 0,
            message: format!("no answer from the API server: {e}"),
            retryable: true,
            retry_after: None,
        },
        kube::Error::SerdeError(err) => ClusterError::Protocol {
            what: what.to_string(),
            message: err.to_string(),
        },
        other => ClusterError::Api {
            what: what.to_string(),
            code: 0,
            message: other.to_string(),
            retryable: false,
            retry_after: None,
        },
    }
}

/// An error answer of the API server, retryable for 429 and 5xx (except 501).
pub fn from_status(
    what: &str,
    code: u16,
    message: &str,
    retry_after: Option<Duration>,
) -> ClusterError {
    let retryable = code == 429 || (500..600).contains(&code) && code != 501;
    let hint = match code {
        401 => "; the credentials in the kubeconfig were refused",
        403 => {
            "; lifeboat's service account lacks permission (see the ClusterRole in the Helm chart)"
        }
        _ => "",
    };
    ClusterError::Api {
        what: what.to_string(),
        code,
        message: format!("HTTP {code}: {message}{hint}"),
        retryable,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast() -> Policy {
        Policy {
            attempts: 5,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            budget: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let r = with_retry(&fast(), "x", &Observers::default(), || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(from_status("x", 503, "busy", None))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn permanent_errors_fail_at_once_and_attempts_are_bounded() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = with_retry(&fast(), "x", &Observers::default(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(from_status("x", 403, "forbidden", None))
        })
        .await;
        assert!(r.unwrap_err().to_string().contains("lacks permission"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = with_retry(&fast(), "x", &Observers::default(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(from_status("x", 429, "slow down", None))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            5,
            "the contract's minimum of five attempts"
        );
    }

    #[test]
    fn retry_after_is_kept() {
        let e = from_status("x", 429, "Too many requests", Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&e), Some(Duration::from_secs(3)));
        assert!(e.is_retryable());
    }
}
