//! `server`: the daemon's HTTP endpoint, shutdown and leader election.

use std::net::SocketAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Checker, ConfigError, Duration, defaults, nullable};

/// How `lifeboat daemon` serves probes and metrics, shuts down and elects a leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address for `/healthz`, `/ready` and `/metrics`, as `IP:PORT`. Default `0.0.0.0:8000`.
    #[serde(with = "socket_addr")]
    pub listen: SocketAddr,
    /// On SIGTERM or SIGINT, how long a running backup may take to finish before it is
    /// aborted cleanly (no manifest, multipart upload aborted). Keep it under the pod's
    /// `terminationGracePeriodSeconds` (30 s by default). Default `25s`.
    pub shutdown_grace_period: Duration,
    /// Run `backup verify` on each new backup (re-reads the archive and checks its SHA-256
    /// and the snapshots). Doubles the reads of every backup. Default `false`.
    pub verify_after_backup: bool,
    /// Leader election over a `coordination.k8s.io/v1` Lease, so that of several replicas
    /// only one runs the schedules. All replicas answer probes.
    #[serde(deserialize_with = "nullable")]
    pub leader_election: LeaderElectionConfig,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: defaults::LISTEN,
            shutdown_grace_period: defaults::SHUTDOWN_GRACE_PERIOD,
            verify_after_backup: false,
            leader_election: LeaderElectionConfig::default(),
        }
    }
}

impl ServerConfig {
    pub(super) fn check(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        self.leader_election.check(c)
    }
}

/// The Lease that decides which replica runs the schedules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LeaderElectionConfig {
    /// Elect a leader. Turn off only when exactly one replica runs. Default `true`.
    pub enabled: bool,
    /// Namespace of the Lease. Default: the pod's own namespace (from the service account),
    /// else `default`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the Lease. Default `lifeboat`.
    pub lease_name: String,
    /// How long a Lease stays valid without renewal; a dead leader is replaced after at most
    /// this long. Default `15s`.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leadership and stops
    /// starting backups. Must be shorter than `leaseDuration`. Default `10s`.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire, and the leader to renew, the Lease. Must be
    /// shorter than `renewDeadline`. Default `2s`.
    pub retry_period: Duration,
}

impl Default for LeaderElectionConfig {
    fn default() -> LeaderElectionConfig {
        LeaderElectionConfig {
            enabled: true,
            namespace: None,
            lease_name: defaults::LEASE_NAME.to_string(),
            lease_duration: defaults::LEASE_DURATION,
            renew_deadline: defaults::RENEW_DEADLINE,
            retry_period: defaults::RETRY_PERIOD,
        }
    }
}

impl LeaderElectionConfig {
    fn check(&self, c: &Checker<'_>) -> Result<(), ConfigError> {
        const AT: &str = "server.leaderElection";
        if let Some(namespace) = &self.namespace
            && !is_dns_label(namespace)
        {
            return Err(c.invalid(
                &format!("{AT}.namespace"),
                format!("{} is not a namespace name", super::quoted(namespace)),
                "use lowercase letters, digits and '-' (at most 63), or remove it to use the pod's namespace",
            ));
        }
        if !is_dns_subdomain(&self.lease_name) {
            return Err(c.invalid(
                &format!("{AT}.leaseName"),
                format!(
                    "{} is not a valid Lease name",
                    super::quoted(&self.lease_name)
                ),
                "use lowercase letters, digits, '-' and '.', such as lifeboat",
            ));
        }
        for (field, value) in [
            ("leaseDuration", self.lease_duration),
            ("renewDeadline", self.renew_deadline),
            ("retryPeriod", self.retry_period),
        ] {
            if value.as_std() < std::time::Duration::from_secs(1) {
                return Err(c.invalid(
                    &format!("{AT}.{field}"),
                    format!("{value} is too short"),
                    "use at least 1s",
                ));
            }
        }
        if self.renew_deadline >= self.lease_duration {
            let field = if c.is_set(&format!("{AT}.renewDeadline")) {
                "renewDeadline"
            } else {
                "leaseDuration"
            };
            return Err(c.conflict(
                &format!("{AT}.{field}"),
                format!(
                    "renewDeadline ({}) must be shorter than leaseDuration ({})",
                    self.renew_deadline, self.lease_duration
                ),
                "a leader must give up before its Lease can expire; for example leaseDuration: 15s and renewDeadline: 10s",
            ));
        }
        if self.retry_period >= self.renew_deadline {
            let field = if c.is_set(&format!("{AT}.retryPeriod")) {
                "retryPeriod"
            } else {
                "renewDeadline"
            };
            return Err(c.conflict(
                &format!("{AT}.{field}"),
                format!(
                    "retryPeriod ({}) must be shorter than renewDeadline ({})",
                    self.retry_period, self.renew_deadline
                ),
                "the leader must be able to retry a renewal before the deadline; for example renewDeadline: 10s and retryPeriod: 2s",
            ));
        }
        Ok(())
    }
}

/// A DNS-1123 label: a namespace name.
pub(super) fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A DNS-1123 subdomain: most Kubernetes object names.
pub(super) fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `IP:PORT` as text, with a message that says how to write it.
mod socket_addr {
    use super::{Deserialize, Deserializer, Serializer, SocketAddr};

    pub fn serialize<S: Serializer>(addr: &SocketAddr, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(addr)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.trim().parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "{} is not a listen address (IP:PORT); use 0.0.0.0:8000 for every IPv4 interface, [::]:8000 for IPv6, or 127.0.0.1:8000 for local only",
                super::super::quoted(&text)
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_those_of_the_contract() {
        let server = ServerConfig::default();
        assert_eq!(server.listen.to_string(), "0.0.0.0:8000");
        assert_eq!(server.shutdown_grace_period.to_string(), "25s");
        assert!(!server.verify_after_backup);
        let le = server.leader_election;
        assert!(le.enabled);
        assert_eq!(le.lease_name, "lifeboat");
        assert_eq!(
            (
                le.lease_duration.to_string(),
                le.renew_deadline.to_string(),
                le.retry_period.to_string()
            ),
            ("15s".into(), "10s".into(), "2s".into())
        );
    }

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(is_dns_label("lifeboat-system"));
        assert!(!is_dns_label("Lifeboat"));
        assert!(!is_dns_label("-x"));
        assert!(is_dns_subdomain("lifeboat.leader"));
        assert!(!is_dns_subdomain("lifeboat..leader"));
    }
}
