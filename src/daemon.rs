//! The daemon: runs the config's schedules on time (never overlapping a schedule with itself),
//! prunes old backups, serves probes and metrics, and elects one leader among its replicas.
//!
//! Shutdown (SIGTERM, SIGINT): no new run starts; a running backup gets
//! `server.shutdownGracePeriod` (25 s by default, inside Kubernetes' 30 s) to finish, then it is
//! cancelled (its upload aborted, no manifest written); the Lease is released; exit 0.

pub mod http;
pub mod leader;
pub mod metrics;
pub mod schedule;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::cluster::{ClusterError, Connection};
use crate::config::Config;
use crate::events::{LogObserver, Observers};
use crate::store::{Store, StoreError};
use crate::volumes::ec2::{AwsEc2, Ec2Error};
use crate::{backup, retention, setup};
use metrics::Metrics;
use schedule::{Clock as _, SystemClock, Timetable};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Cluster(#[from] ClusterError),
    #[error("{0}")]
    Ec2(#[from] Ec2Error),
    #[error("cannot listen on {addr} (server.listen): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "the config has no schedules: the daemon would do nothing; add schedules (see config/production.yaml) or use `lifeboat backup create`"
    )]
    NoSchedules,
}

/// Everything a scheduled run needs, shared by all schedules.
struct Shared {
    cfg: Config,
    conn: Connection,
    store: Store,
    ec2: Option<AwsEc2>,
    metrics: Arc<Metrics>,
    cancel: watch::Receiver<bool>,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(
    cfg: Config,
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<(), DaemonError> {
    if cfg.schedules.is_empty() {
        return Err(DaemonError::NoSchedules);
    }
    let store = setup::open_store(&cfg).await?;
    let conn = setup::connect(&cfg, kubeconfig, context).await?;
    let snapshots = cfg.volumes.snapshots
        || cfg
            .schedules
            .iter()
            .any(|s| s.snapshot_volumes == Some(true));
    let ec2 = setup::open_ec2(&cfg, snapshots).await?;
    let metrics = Arc::new(Metrics::new());
    for s in &cfg.schedules {
        metrics.init_schedule(&s.name);
        metrics.set_schedule_interval(&s.name, longest_interval(s));
        if cfg.server.verify_after_backup {
            metrics.init_verifications(&s.name);
        }
    }
    // The last success of each schedule comes from the bucket, so that a restart does not look
    // like a schedule that never succeeded.
    match crate::catalog::list(&store).await {
        Ok((backups, _)) => {
            for s in &cfg.schedules {
                let last = backups.iter().find(|b| {
                    b.schedule.as_deref() == Some(s.name.as_str())
                        && b.phase == crate::archive::manifest::Phase::Completed
                });
                if let Some(b) = last {
                    metrics.set_last_success(&s.name, std::time::SystemTime::from(b.completed_at));
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the catalogue at start; last-success metrics start empty");
        }
    }
    let health = Arc::new(http::Health::new(Duration::from_mins(2)));
    let (shutdown_tx, shutdown) = watch::channel(false);
    let (cancel_tx, cancel) = watch::channel(false);

    // Probes and metrics answer from the start, leader or not.
    let ready: http::ReadyCheck = {
        let (store, client) = (store.clone(), conn.client.clone());
        Arc::new(move || {
            let (store, client) = (store.clone(), client.clone());
            async move {
                store.check().await.map_err(|e| format!("storage: {e}"))?;
                client
                    .apiserver_version()
                    .await
                    .map_err(|e| format!("Kubernetes API: {e}"))?;
                Ok(())
            }
            .boxed()
        })
    };
    let listener = http::bind(cfg.server.listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: cfg.server.listen,
            source,
        })?;
    let bound = listener
        .local_addr()
        .map_or_else(|_| cfg.server.listen.to_string(), |a| a.to_string());
    let state = Arc::new(http::State::new(metrics.clone(), health.clone(), ready));
    let http_task = tokio::spawn(http::serve(listener, state, wait_for(shutdown.clone())));
    tracing::info!(listen = %bound, schedules = cfg.schedules.len(), version = env!("CARGO_PKG_VERSION"), "daemon started");

    // Leadership: only the leader starts backups and prunes.
    let (leader_tx, leader) = watch::channel(!cfg.server.leader_election.enabled);
    let elector_task = if cfg.server.leader_election.enabled {
        let config = leader::Config::from_settings(&cfg.server.leader_election);
        tracing::info!(lease = %format!("{}/{}", config.namespace, config.lease_name), identity = %config.identity, "leader election on");
        let m = metrics.clone();
        let elector = leader::Elector::new(conn.client.clone(), config)
            .on_change(move |is_leader| m.set_leader(is_leader));
        Some(tokio::spawn(
            elector.run(leader_tx, wait_for(shutdown.clone())),
        ))
    } else {
        metrics.set_leader(true);
        drop(leader_tx);
        None
    };

    let shared = Arc::new(Shared {
        cfg,
        conn,
        store,
        ec2,
        metrics: metrics.clone(),
        cancel,
    });
    // On becoming leader (and at start when leading): metrics, and retention for every schedule.
    let leadership_task = tokio::spawn(follow_leadership(
        shared.clone(),
        leader.clone(),
        shutdown.clone(),
    ));

    let mut loops = Vec::new();
    for s in &shared.cfg.schedules {
        let timetable = Timetable::new(s.cron.cron().clone(), s.timezone.zone().clone());
        let hooks = Arc::new(Hooks {
            schedule: s.name.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
        });
        let shared = shared.clone();
        let name = s.name.clone();
        loops.push(tokio::spawn(schedule::run_loop(
            Arc::new(SystemClock),
            timetable,
            leader.clone(),
            shutdown.clone(),
            hooks,
            move |tick| {
                let (shared, name) = (shared.clone(), name.clone());
                // A backup's future borrows across its concurrent listers, and rustc cannot prove
                // such futures Send for every lifetime (rust-lang/rust#102211), so it is driven on
                // a blocking thread of the runtime, which needs no Send future.
                let runtime = tokio::runtime::Handle::current();
                async move {
                    let _ = tokio::task::spawn_blocking(move || {
                        runtime.block_on(scheduled_run(shared, name, tick));
                    })
                    .await;
                }
            },
        )));
    }

    wait_for_signal().await;
    tracing::info!("shutting down: no new runs; waiting for running backups");
    shutdown_tx.send_replace(true);
    let mut running = Vec::new();
    for l in loops {
        if let Ok(Some(handle)) = l.await {
            running.push(handle);
        }
    }
    let grace = shared.cfg.server.shutdown_grace_period.as_std();
    let all = futures::future::join_all(running.iter_mut());
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!(
            grace_seconds = grace.as_secs(),
            "backups still running after the grace period: cancelling them (uploads aborted, no manifest)"
        );
        cancel_tx.send_replace(true);
        let all = futures::future::join_all(running.iter_mut());
        if tokio::time::timeout(Duration::from_secs(4), all)
            .await
            .is_err()
        {
            for h in &running {
                h.abort();
            }
        }
    }
    leadership_task.abort();
    if let Some(t) = elector_task {
        // Releasing the Lease lets the other replica take over at once.
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), http_task).await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for(mut flag: watch::Receiver<bool>) {
    let _ = flag.wait_for(|f| *f).await;
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Keeps the leader metric current and prunes every schedule whenever this replica becomes
/// the leader (retention "on start").
async fn follow_leadership(
    shared: Arc<Shared>,
    mut leader: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
) {
    loop {
        let is_leader = *leader.borrow_and_update();
        shared.metrics.set_leader(is_leader);
        if is_leader && !*shutdown.borrow() {
            for s in &shared.cfg.schedules {
                prune(&shared, &s.name).await;
            }
        }
        if leader.changed().await.is_err() {
            return;
        }
    }
}

/// One scheduled backup, then the schedule's retention. Every log line carries the schedule
/// and the backup name.
async fn scheduled_run(shared: Arc<Shared>, schedule: String, tick: jiff::Timestamp) {
    let Some(s) = shared.cfg.schedule(&schedule) else {
        return;
    };
    let mut req = setup::schedule_request(&shared.cfg, s, tick);
    req.cancel = Some(shared.cancel.clone());
    let span = tracing::info_span!("backup", schedule = %schedule, backup = %req.name);
    async {
        let observers = Observers::default()
            .with(Arc::new(LogObserver))
            .with(shared.metrics.observer(&schedule));
        // The outcome is reported through the observers (logs, metrics); a failed run left
        // nothing behind, and the next tick tries again.
        let made = backup::run(
            &shared.conn,
            &shared.store,
            &req,
            shared.ec2.as_ref(),
            &observers,
        )
        .await;
        let cancelled = *shared.cancel.borrow();
        if let Ok(m) = &made
            && shared.cfg.server.verify_after_backup
            && !cancelled
        {
            verify(&shared, &m.name, &observers).await;
        }
        if !*shared.cancel.borrow() {
            prune(&shared, &schedule).await;
        }
    }
    .instrument(span)
    .await;
}

/// Verifies a backup just made (`server.verifyAfterBackup`). The verdict is only reported (a
/// log line and `lifeboat_verifications_total`): a backup that fails is kept, since it may be
/// the only one there is and an operator should look at it before anything is deleted.
async fn verify(shared: &Shared, backup: &str, observers: &Observers) {
    let mut req = crate::verify::Request::new(backup);
    req.identity_file
        .clone_from(&shared.cfg.encryption.identity_file);
    let run = crate::verify::run(&shared.store, &req, shared.ec2.as_ref(), observers);
    // A shutdown past its grace period stops a verification as it cancels a backup: stopping
    // it changes nothing, and the backup stays as it was made.
    let outcome = tokio::select! {
        r = run => r,
        () = wait_for(shared.cancel.clone()) => {
            tracing::info!(backup, "verification stopped by the shutdown");
            return;
        }
    };
    if let Err(e) = outcome {
        // The manifest could not even be read back: as much a failed verification as a
        // corrupt archive, and counted as one.
        observers.emit(&crate::events::Event::VerifyFinished {
            backup: backup.to_string(),
            phase: crate::verify::Phase::Failed,
            objects: 0,
            problems: vec![format!("manifest: {e}")],
            seconds: 0.0,
        });
    }
}

/// Applies a schedule's retention and reports it.
async fn prune(shared: &Shared, schedule: &str) {
    let Some(s) = shared.cfg.schedule(schedule) else {
        return;
    };
    let policy = setup::retention_policy(s);
    match retention::apply(
        &shared.store,
        shared.ec2.as_ref(),
        schedule,
        policy,
        jiff::Timestamp::now(),
        false,
    )
    .await
    {
        Ok(outcome) => {
            for e in &outcome.deleted {
                tracing::info!(schedule, backup = %e.name, reason = %e.reason, "retention deleted a backup");
            }
            for e in &outcome.failed {
                tracing::warn!(schedule, backup = %e.name, error = %e.reason, "retention could not delete a backup; it is tried again next time");
            }
            for l in &outcome.locked {
                // Info, not a warning: the lock is configured protection doing its job.
                tracing::info!(
                    schedule,
                    backup = %l.name,
                    reason = %l.reason,
                    lock_mode = l.lock.mode.map(crate::store::ObjectLockMode::as_str),
                    locked_until = l.lock.until.map(tracing::field::display),
                    legal_hold = l.lock.legal_hold,
                    "retention kept a backup under S3 Object Lock ({}); it is deleted on the first run after the lock ends",
                    l.lock
                );
            }
            for d in &outcome.debris {
                tracing::info!(schedule, backup = %d, "removed the remains of a run that never finished");
            }
            shared
                .metrics
                .retention(schedule, "deleted", outcome.deleted.len() as u64);
            shared
                .metrics
                .retention(schedule, "failed", outcome.failed.len() as u64);
            shared
                .metrics
                .retention(schedule, "locked", outcome.locked.len() as u64);
        }
        Err(e) => tracing::warn!(schedule, error = %e, "retention could not list the backups"),
    }
}

/// Scheduler callbacks: metrics for skipped runs, logs for missed ones, the liveness heartbeat.
struct Hooks {
    schedule: String,
    metrics: Arc<Metrics>,
    health: Arc<http::Health>,
}

impl schedule::Hooks for Hooks {
    fn skipped(&self, tick: jiff::Timestamp) {
        tracing::warn!(schedule = %self.schedule, %tick, "the previous run is still going: this run is skipped");
        self.metrics.skipped_run(&self.schedule);
    }

    fn missed(&self, tick: jiff::Timestamp) {
        tracing::warn!(schedule = %self.schedule, %tick, "a run was missed (the process was stopped or suspended); missed runs are not caught up");
    }

    fn beat(&self) {
        self.health.beat();
    }
}

/// The longest gap between consecutive runs of a schedule over the next 200 occurrences (a
/// weekday-only schedule's gap is the weekend), for "no backup for 2 intervals" alerts.
fn longest_interval(s: &crate::config::Schedule) -> Duration {
    let t = Timetable::new(s.cron.cron().clone(), s.timezone.zone().clone());
    let mut at = SystemClock.now();
    let mut longest = Duration::ZERO;
    for _ in 0..200 {
        let Some(next) = t.next_after(at) else { break };
        longest = longest.max(Duration::try_from(next.duration_since(at)).unwrap_or_default());
        at = next;
    }
    longest
}

/// Next run times of every schedule, for `schedule list`.
pub fn next_runs(cfg: &Config, count: usize) -> Vec<(String, Vec<jiff::Timestamp>)> {
    let now = SystemClock.now();
    cfg.schedules
        .iter()
        .map(|s| {
            let t = Timetable::new(s.cron.cron().clone(), s.timezone.zone().clone());
            let mut at = now;
            let mut out = Vec::new();
            while out.len() < count {
                match t.next_after(at) {
                    Some(n) => {
                        out.push(n);
                        at = n;
                    }
                    None => break,
                }
            }
            (s.name.clone(), out)
        })
        .collect()
}
