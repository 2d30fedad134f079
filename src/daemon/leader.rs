//! Leader election over a `coordination.k8s.io/v1` Lease, so that of several daemon replicas
//! only one runs the backup schedules.
//!
//! The semantics are client-go's `leaderelection` with a `LeaseLock`: the Lease records
//! `holderIdentity`, `leaseDurationSeconds`, `acquireTime`, `renewTime` (MicroTime, RFC 3339
//! with microseconds) and `leaseTransitions`, so `kubectl get lease -o yaml` and other
//! client-go-based tools read it the usual way.
//!
//! # Why a loop of our own rather than `kube-lease-manager`
//!
//! `kube-lease-manager` 0.13 does build against kube 5 with our feature set (no second TLS
//! stack), but it pulls `rand` 0.10 beside the workspace's 0.9, and three of its design
//! choices are hard to trust for "never two leaders":
//!
//! * a takeover is not one compare-and-swap: it first clears an expired Lease with an
//!   unconditional strategic merge patch, sleeps, then applies (SSA) and patches
//!   `leaseTransitions` separately. The clearing patch can erase a renewal that landed in
//!   between, while the renewing holder still believes it leads;
//! * it has no renew deadline: when the API server is unreachable, its watch channel keeps
//!   saying "leader" until a later GET succeeds, although the other replica takes over as soon
//!   as the Lease expires;
//! * its durations are whole seconds with no retry period.
//!
//! The loop here is small enough to read in one sitting and has a single write path:
//! every acquisition, renewal and release is a GET followed by a PUT that carries the
//! `resourceVersion` just read. The API server rejects the PUT with 409 Conflict if anyone
//! wrote in between, so two replicas can never both win the same round.
//!
//! # Timing
//!
//! * A candidate takes the Lease when it does not exist, when its `holderIdentity` is empty
//!   (released), or when it is expired. Like client-go, expiry (`renewTime +
//!   leaseDurationSeconds < now`) is measured on the candidate's own monotonic clock from the
//!   moment it saw the record last change, not by comparing the holder's `renewTime` with the
//!   local wall clock: a replica whose clock is skewed can then never steal a live Lease.
//! * The leader renews every `retry_period`. Its leadership is counted from the *start* of
//!   its last successful renewal (before the server could have applied it), and it steps down
//!   once `renew_deadline` has passed without another success; a request still in flight at
//!   that moment is abandoned. Because `renew_deadline < lease_duration`, the leader always
//!   stops before any candidate may take over.
//! * A 409 Conflict on the PUT means someone else wrote the Lease first: a leader steps down
//!   at once, a candidate tries again on the next period. Every other error (429, 5xx,
//!   time-outs, dropped connections) is logged and retried on the next period.
//! * On shutdown the elector first reports "not leader" (so no new backup starts), then, if
//!   the Lease still names it, clears `holderIdentity` and sets `leaseDurationSeconds: 1`, as
//!   client-go's `ReleaseOnCancel` does, so the other replica takes over on its next poll.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::LeaderElectionConfig;

/// The service-account file that names the pod's namespace.
const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The shortest period the loop accepts, so a zero in a hand-built [`Config`] cannot spin.
const MIN_RETRY_PERIOD: Duration = Duration::from_millis(10);

/// Where the elector's Lease lives, who this replica is, and its timing.
///
/// client-go's defaults are `lease_duration` 15 s, `renew_deadline` 10 s and `retry_period`
/// 2 s. The timing must satisfy `retry_period < renew_deadline < lease_duration`, which
/// [`LeaderElectionConfig`] checks when the config file is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This replica's `holderIdentity`; unique among the replicas.
    pub identity: String,
    /// How long a Lease stays valid after its last renewal (`leaseDurationSeconds`, rounded
    /// up to whole seconds in the Lease; used as is on this side).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading.
    pub renew_deadline: Duration,
    /// How often a candidate tries to acquire, and the leader to renew, the Lease.
    pub retry_period: Duration,
}

impl Config {
    /// A config with client-go's timing (15 s / 10 s / 2 s).
    pub fn new(
        namespace: impl Into<String>,
        lease_name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Config {
        Config {
            namespace: namespace.into(),
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// The elector config for `server.leaderElection`: its namespace or
    /// [`default_namespace`], and a fresh [`default_identity`].
    pub fn from_settings(settings: &LeaderElectionConfig) -> Config {
        Config {
            namespace: settings.namespace.clone().unwrap_or_else(default_namespace),
            lease_name: settings.lease_name.clone(),
            identity: default_identity(),
            lease_duration: settings.lease_duration.as_std(),
            renew_deadline: settings.renew_deadline.as_std(),
            retry_period: settings.retry_period.as_std(),
        }
    }

    /// The Lease record with this replica as holder, renewed at `now`; taking over from
    /// another holder (or a released Lease) starts a new term and counts a transition.
    fn record(&self, old: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let ours = old.is_some_and(|o| o.holder_identity.as_deref() == Some(&self.identity));
        let transitions = old.and_then(|o| o.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration_seconds()),
            acquire_time: if ours {
                old.and_then(|o| o.acquire_time.clone())
                    .or(Some(MicroTime(now)))
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if old.is_none() || ours {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..old.cloned().unwrap_or_default()
        }
    }

    /// `leaseDurationSeconds` as written to the Lease: whole seconds, rounded up, at least 1.
    fn lease_duration_seconds(&self) -> i32 {
        let secs =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
    }
}

/// This replica's identity: `POD_NAME` (set by the chart through the downward API) or the
/// hostname, plus a short random suffix so that two processes on one host differ.
pub fn default_identity() -> String {
    let base = non_empty_env("POD_NAME")
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .or_else(|| non_empty_env("HOSTNAME"))
        .unwrap_or_else(|| "lifeboat".to_string());
    format!("{base}_{}", random_suffix(5))
}

/// The namespace for the Lease: `POD_NAMESPACE`, else the service account's namespace file,
/// else `default`.
pub fn default_namespace() -> String {
    non_empty_env("POD_NAMESPACE")
        .or_else(|| {
            std::fs::read_to_string(NAMESPACE_FILE)
                .ok()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
        })
        .unwrap_or_else(|| "default".to_string())
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn random_suffix(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

/// Called with `true` when this replica starts leading and `false` when it stops.
type OnChange = Box<dyn Fn(bool) + Send + Sync>;

/// Takes part in the election for one Lease. Build with [`Elector::new`], then drive with
/// [`Elector::run`].
pub struct Elector {
    api: Api<Lease>,
    config: Config,
    on_change: Option<OnChange>,
}

impl fmt::Debug for Elector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Elector")
            .field("config", &self.config)
            .field("on_change", &self.on_change.is_some())
            .finish_non_exhaustive()
    }
}

/// What the elector last saw of the Lease, and when (on the local monotonic clock).
#[derive(Debug)]
struct Observed {
    spec: LeaseSpec,
    at: Instant,
}

/// The loop's memory between rounds.
#[derive(Debug, Default)]
struct State {
    observed: Option<Observed>,
    /// `Some(start of the last successful renewal)` while leading.
    leading_since_renew: Option<Instant>,
    /// The Lease may name this replica: a write was sent and no later read showed otherwise.
    may_hold: bool,
}

/// The result of one round.
#[derive(Debug)]
enum Round {
    /// The Lease was created or updated with this replica as holder.
    Held,
    /// Someone else holds a valid Lease until about `expires`.
    HeldByOther { holder: String, expires: Instant },
    /// Someone else wrote the Lease between our read and our write (409).
    Conflict,
}

impl Elector {
    /// An elector for `config`'s Lease, talking to the API server through `client`.
    pub fn new(client: kube::Client, config: Config) -> Elector {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            on_change: None,
        }
    }

    /// Calls `f(true)` when this replica starts leading and `f(false)` when it stops (lost,
    /// gave up, or shut down), for metrics. Transitions are logged either way.
    #[must_use]
    pub fn on_change(mut self, f: impl Fn(bool) + Send + Sync + 'static) -> Elector {
        self.on_change = Some(Box::new(f));
        self
    }

    /// The identity this elector writes as `holderIdentity`.
    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// The elector's config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs until `shutdown` resolves, then releases the Lease if held. `leader` says whether
    /// this replica leads right now: it is set to `false` at once, to `true` only after a
    /// successful write of the Lease, and back to `false` as soon as leadership cannot be
    /// vouched for. The daemon starts backups only while it reads `true`.
    pub async fn run(self, leader: watch::Sender<bool>, shutdown: impl Future<Output = ()> + Send) {
        let mut shutdown = std::pin::pin!(shutdown);
        leader.send_replace(false);
        let retry = self.config.retry_period.max(MIN_RETRY_PERIOD);
        let mut state = State::default();
        tracing::debug!(
            lease = %self.lease_ref(),
            identity = %self.config.identity,
            "leader election started"
        );
        loop {
            let started = Instant::now();
            // A leader's round may not outlive its renew deadline; a candidate's is bounded
            // the same way so that a hung connection cannot stall it for minutes.
            let deadline = state
                .leading_since_renew
                .map_or(started + self.config.renew_deadline, |since| {
                    since + self.config.renew_deadline
                });
            let round = tokio::select! {
                biased;
                () = &mut shutdown => break,
                r = tokio::time::timeout_at(deadline, self.round(&mut state)) => r,
            };
            let mut wake = started + retry;
            match round {
                Ok(Ok(Round::Held)) => {
                    if state.leading_since_renew.is_none() {
                        let transitions = state
                            .observed
                            .as_ref()
                            .and_then(|o| o.spec.lease_transitions)
                            .unwrap_or_default();
                        tracing::info!(
                            lease = %self.lease_ref(),
                            identity = %self.config.identity,
                            transitions,
                            "acquired leadership"
                        );
                        self.set(&leader, true);
                    }
                    state.leading_since_renew = Some(started);
                }
                Ok(Ok(Round::HeldByOther { holder, expires })) => {
                    if state.leading_since_renew.take().is_some() {
                        tracing::info!(
                            lease = %self.lease_ref(),
                            identity = %self.config.identity,
                            %holder,
                            "lost leadership: the Lease is held by another replica"
                        );
                        self.set(&leader, false);
                    }
                    // Look again right when the holder's Lease would expire.
                    wake = wake.min(expires.max(Instant::now()));
                }
                Ok(Ok(Round::Conflict)) => {
                    if state.leading_since_renew.take().is_some() {
                        tracing::info!(
                            lease = %self.lease_ref(),
                            identity = %self.config.identity,
                            "lost leadership: another replica updated the Lease first"
                        );
                        self.set(&leader, false);
                    } else {
                        tracing::debug!(
                            lease = %self.lease_ref(),
                            "another replica updated the Lease first"
                        );
                    }
                }
                Ok(Err(e)) => self.warn_api_error(&e, state.leading_since_renew.is_some()),
                Err(_elapsed) => tracing::warn!(
                    lease = %self.lease_ref(),
                    identity = %self.config.identity,
                    timeout_ms = deadline.saturating_duration_since(started).as_millis(),
                    "leader election: the API server did not answer in time; retrying"
                ),
            }
            if let Some(since) = state.leading_since_renew {
                let give_up = since + self.config.renew_deadline;
                if Instant::now() >= give_up {
                    state.leading_since_renew = None;
                    tracing::info!(
                        lease = %self.lease_ref(),
                        identity = %self.config.identity,
                        renew_deadline_ms = self.config.renew_deadline.as_millis(),
                        "lost leadership: the Lease could not be renewed within the renew deadline"
                    );
                    self.set(&leader, false);
                    continue;
                }
                // Step down exactly at the deadline even if the next round is later.
                wake = wake.min(give_up);
            }
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = tokio::time::sleep_until(wake) => {}
            }
        }

        if state.leading_since_renew.take().is_some() {
            // Stop starting backups before the Lease becomes free for the other replica.
            self.set(&leader, false);
        }
        if state.may_hold {
            self.release().await;
        }
    }

    /// One client-go `tryAcquireOrRenew`: read the Lease, then create it or compare-and-swap
    /// it with this replica as holder, unless another replica holds it validly.
    async fn round(&self, state: &mut State) -> Result<Round, kube::Error> {
        let now = Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.config.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.lease_name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.config.record(None, now)),
            };
            state.may_hold = true;
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    state.observe(created.spec.unwrap_or_default());
                    Ok(Round::Held)
                }
                Err(e) if is_conflict(&e) => Ok(Round::Conflict),
                Err(e) => Err(e),
            };
        };

        let old = lease.spec.clone().unwrap_or_default();
        let observed_at = state.observe(old.clone());
        let holder = old.holder_identity.clone().unwrap_or_default();
        if holder != self.config.identity {
            state.may_hold = false;
            if !holder.is_empty() {
                let valid_for = old
                    .lease_duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .filter(|s| *s > 0)
                    .map_or(self.config.lease_duration, Duration::from_secs);
                let expires = observed_at + valid_for;
                if Instant::now() < expires {
                    return Ok(Round::HeldByOther { holder, expires });
                }
            }
        }

        let mut update = lease;
        update.spec = Some(self.config.record(Some(&old), now));
        // metadata.resourceVersion stays as read: the server's compare-and-swap.
        state.may_hold = true;
        match self
            .api
            .replace(&self.config.lease_name, &PostParams::default(), &update)
            .await
        {
            Ok(replaced) => {
                state.observe(replaced.spec.unwrap_or_default());
                Ok(Round::Held)
            }
            Err(e) if is_conflict(&e) => Ok(Round::Conflict),
            Err(e) => Err(e),
        }
    }

    /// Frees the Lease if it still names this replica, bounded by the renew deadline.
    async fn release(&self) {
        let attempt = async {
            let Some(mut lease) = self.api.get_opt(&self.config.lease_name).await? else {
                return Ok(false);
            };
            let mut spec = lease.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(&self.config.identity) {
                return Ok(false);
            }
            let now = Timestamp::now();
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.acquire_time = Some(MicroTime(now));
            spec.renew_time = Some(MicroTime(now));
            lease.spec = Some(spec);
            match self
                .api
                .replace(&self.config.lease_name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            }
        };
        match tokio::time::timeout(self.config.renew_deadline, attempt).await {
            Ok(Ok(true)) => tracing::info!(
                lease = %self.lease_ref(),
                identity = %self.config.identity,
                "released leadership"
            ),
            Ok(Ok(false)) => tracing::debug!(
                lease = %self.lease_ref(),
                "the Lease no longer names this replica; nothing to release"
            ),
            Ok(Err(e)) => tracing::warn!(
                lease = %self.lease_ref(),
                error = %e,
                "could not release the Lease; the other replica takes over when it expires"
            ),
            Err(_elapsed) => tracing::warn!(
                lease = %self.lease_ref(),
                "the API server did not answer in time to release the Lease; the other replica takes over when it expires"
            ),
        }
    }

    fn set(&self, leader: &watch::Sender<bool>, leading: bool) {
        leader.send_replace(leading);
        if let Some(f) = &self.on_change {
            f(leading);
        }
    }

    fn warn_api_error(&self, e: &kube::Error, leading: bool) {
        let hint = match e {
            kube::Error::Api(s) if s.is_forbidden() => {
                "grant the daemon's service account get, create and update on leases.coordination.k8s.io in this namespace"
            }
            _ if leading => "renewing again on the next period",
            _ => "trying again on the next period",
        };
        tracing::warn!(
            lease = %self.lease_ref(),
            identity = %self.config.identity,
            error = %e,
            "leader election: Lease request failed; {hint}"
        );
    }

    fn lease_ref(&self) -> String {
        format!("{}/{}", self.config.namespace, self.config.lease_name)
    }
}

impl State {
    /// Records what was read or written, and returns when that record was first seen: a
    /// record that has not changed keeps its first observation time.
    fn observe(&mut self, spec: LeaseSpec) -> Instant {
        match &self.observed {
            Some(o) if o.spec == spec => o.at,
            _ => {
                let at = Instant::now();
                self.observed = Some(Observed { spec, at });
                at
            }
        }
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::new("ns", "lease", "me")
    }

    fn spec(holder: &str, transitions: i32, at: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_string()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(at)),
            renew_time: Some(MicroTime(at)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_new_lease_starts_at_zero_transitions() {
        let now = Timestamp::now();
        let r = config().record(None, now);
        assert_eq!(r.holder_identity.as_deref(), Some("me"));
        assert_eq!(r.lease_transitions, Some(0));
        assert_eq!(r.lease_duration_seconds, Some(15));
        assert_eq!(r.acquire_time, Some(MicroTime(now)));
        assert_eq!(r.renew_time, Some(MicroTime(now)));
    }

    #[test]
    fn renewal_keeps_acquire_time_and_transitions() {
        let then = Timestamp::from_second(1_700_000_000).unwrap();
        let now = Timestamp::now();
        let r = config().record(Some(&spec("me", 3, then)), now);
        assert_eq!(r.lease_transitions, Some(3));
        assert_eq!(r.acquire_time, Some(MicroTime(then)));
        assert_eq!(r.renew_time, Some(MicroTime(now)));
    }

    #[test]
    fn takeover_counts_a_transition_and_starts_a_term() {
        let then = Timestamp::from_second(1_700_000_000).unwrap();
        let now = Timestamp::now();
        let r = config().record(Some(&spec("other", 3, then)), now);
        assert_eq!(r.holder_identity.as_deref(), Some("me"));
        assert_eq!(r.lease_transitions, Some(4));
        assert_eq!(r.acquire_time, Some(MicroTime(now)));

        let mut released = spec("other", 4, then);
        released.holder_identity = None;
        let r = config().record(Some(&released), now);
        assert_eq!(r.lease_transitions, Some(5));
    }

    #[test]
    fn lease_duration_rounds_up_to_whole_seconds() {
        let mut c = config();
        c.lease_duration = Duration::from_millis(1500);
        assert_eq!(c.lease_duration_seconds(), 2);
        c.lease_duration = Duration::from_millis(200);
        assert_eq!(c.lease_duration_seconds(), 1);
        c.lease_duration = Duration::from_secs(15);
        assert_eq!(c.lease_duration_seconds(), 15);
    }

    #[test]
    fn identities_differ_by_a_random_suffix() {
        let a = default_identity();
        let b = default_identity();
        assert_ne!(a, b);
        assert_eq!(a.rsplit_once('_').map(|(_, s)| s.len()), Some(5));
    }
}
