//! Running a schedule on time: cron occurrences computed by croner in the schedule's IANA zone,
//! a loop of our own with an injectable clock, and an explicit overlap policy.
//!
//! tokio-cron-scheduler fixes a zone's UTC offset when a job is created (an hour off after every
//! DST change) and starts overlapping runs; here every next occurrence is computed afresh in the
//! zone from the previous instant, so DST changes are followed, and a tick that finds the
//! previous run of the schedule still going is skipped and counted, never stacked.
//!
//! DST policy (croner's, pinned by the tests below): a fixed-time job whose time falls in a
//! spring-forward gap runs at the first instant after the gap (02:30 on the day Berlin jumps
//! from 02:00 to 03:00 runs at 03:00), so no day is lost; in a fall-back overlap it runs once
//! (the first occurrence); interval jobs (`@hourly`, `*/5`) run every real interval.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio::sync::watch;

/// When things happen; the daemon uses the system clock, tests a manual one.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    /// Resolves at or after `deadline`.
    fn sleep_until(&self, deadline: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep_until(&self, deadline: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let wait =
            Duration::try_from(deadline.duration_since(Timestamp::now())).unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A schedule's occurrences.
#[derive(Debug, Clone)]
pub struct Timetable {
    cron: croner::Cron,
    zone: TimeZone,
}

impl Timetable {
    pub fn new(cron: croner::Cron, zone: TimeZone) -> Self {
        Timetable { cron, zone }
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let zoned = t.to_zoned(self.zone.clone());
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
    }
}

/// What the loop reports besides runs.
pub trait Hooks: Send + Sync + 'static {
    /// A tick found the previous run still going (it is skipped, never stacked).
    fn skipped(&self, tick: Timestamp);
    /// A tick came too late to be worth running (the process was stopped or suspended); missed
    /// runs are not caught up.
    fn missed(&self, tick: Timestamp);
    /// The loop is alive (for /healthz).
    fn beat(&self);
}

/// How late a tick may fire and still run.
pub const MAX_LATENESS: Duration = Duration::from_mins(1);

/// Runs `run(tick)` at every occurrence while `leader` is true, until `shutdown` is true.
/// Returns the run still going at shutdown, if any, for the caller to give a grace period.
pub async fn run_loop<C, H, F, Fut>(
    clock: Arc<C>,
    timetable: Timetable,
    mut leader: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
    hooks: Arc<H>,
    run: F,
) -> Option<tokio::task::JoinHandle<()>>
where
    C: Clock,
    H: Hooks,
    F: Fn(Timestamp) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut current: Option<tokio::task::JoinHandle<()>> = None;
    // The last tick handled: the next one is the first occurrence after it.
    let mut after = clock.now();
    loop {
        hooks.beat();
        let Some(tick) = timetable.next_after(after) else {
            // A pattern with no future occurrence (config validation refuses those): idle.
            let _ = shutdown.wait_for(|s| *s).await;
            return current;
        };
        let now = clock.now();
        if tick > now {
            // Wake at the tick, or earlier to keep the heartbeat fresh, then look again.
            let wake = tick.min(now + jiff::SignedDuration::from_secs(30));
            tokio::select! {
                () = clock.sleep_until(wake) => {}
                _ = shutdown.wait_for(|s| *s) => return current,
            }
            continue;
        }
        let late = Duration::try_from(now.duration_since(tick)).unwrap_or_default();
        // Missed ticks (the process was stopped or suspended) are not caught up: jump to now.
        after = if late > MAX_LATENESS { now } else { tick };
        if *shutdown.borrow() {
            return current;
        }
        if !*leader.borrow_and_update() {
            continue;
        }
        if late > MAX_LATENESS {
            hooks.missed(tick);
            continue;
        }
        if current.as_ref().is_some_and(|h| !h.is_finished()) {
            hooks.skipped(tick);
            continue;
        }
        current = Some(tokio::spawn(run(tick)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn table(cron: &str, zone: &str) -> Timetable {
        let cron: crate::config::CronExpr = cron.parse().unwrap();
        Timetable::new(cron.cron().clone(), TimeZone::get(zone).unwrap())
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn daily_job_follows_the_zone_across_dst_changes() {
        // 02:00 in Berlin is 01:00 UTC in winter and 00:00 UTC in summer; a fixed UTC offset
        // (what tokio-cron-scheduler keeps) would be an hour off after the change.
        let t = table("0 2 * * *", "Europe/Berlin");
        assert_eq!(
            t.next_after(ts("2026-03-27T12:00:00Z")),
            Some(ts("2026-03-28T01:00:00Z"))
        );
        // 2026-03-29 02:00 does not exist in Berlin (clocks jump 02:00 -> 03:00): the job runs
        // at 03:00 CEST, the first instant after the gap, rather than being lost for the day.
        assert_eq!(
            t.next_after(ts("2026-03-28T12:00:00Z")),
            Some(ts("2026-03-29T01:00:00Z"))
        );
        assert_eq!(
            t.next_after(ts("2026-03-29T12:00:00Z")),
            Some(ts("2026-03-30T00:00:00Z")),
            "summer time: 02:00 CEST = 00:00 UTC"
        );
        // Autumn: 2026-10-25 02:00 happens twice in Berlin; a fixed-time job runs once.
        let first = t.next_after(ts("2026-10-24T12:00:00Z")).unwrap();
        let second = t.next_after(first).unwrap();
        assert_eq!(first, ts("2026-10-25T00:00:00Z"));
        assert_eq!(
            second,
            ts("2026-10-26T01:00:00Z"),
            "not again an hour later"
        );
    }

    #[test]
    fn hourly_job_runs_every_real_hour_across_the_autumn_overlap() {
        let t = table("@hourly", "Europe/Berlin");
        let mut at = ts("2026-10-24T23:30:00Z");
        let mut ticks = Vec::new();
        for _ in 0..4 {
            at = t.next_after(at).unwrap();
            ticks.push(at.to_string());
        }
        assert_eq!(
            ticks,
            [
                "2026-10-25T00:00:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T02:00:00Z",
                "2026-10-25T03:00:00Z"
            ]
        );
    }

    #[test]
    fn six_field_and_five_field_patterns() {
        let t = table("*/2 * * * * *", "UTC");
        assert_eq!(
            t.next_after(ts("2026-01-01T00:00:01Z")),
            Some(ts("2026-01-01T00:00:02Z"))
        );
        let t = table("30 3 * * 1", "UTC");
        assert_eq!(
            t.next_after(ts("2026-11-28T00:00:00Z")),
            Some(ts("2026-11-30T03:30:00Z")),
            "Monday 03:30"
        );
    }

    /// A clock tests move by hand; sleepers wake when it passes their deadline.
    struct ManualClock {
        now: Mutex<Timestamp>,
        tick: watch::Sender<Timestamp>,
    }

    impl ManualClock {
        fn new(start: Timestamp) -> Arc<Self> {
            Arc::new(ManualClock {
                now: Mutex::new(start),
                tick: watch::channel(start).0,
            })
        }

        fn advance(&self, by: jiff::SignedDuration) {
            let mut now = self.now.lock().unwrap();
            *now += by;
            self.tick.send_replace(*now);
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Timestamp {
            *self.now.lock().unwrap()
        }

        fn sleep_until(&self, deadline: Timestamp) -> Pin<Box<dyn Future<Output = ()> + Send>> {
            let mut rx = self.tick.subscribe();
            Box::pin(async move {
                let _ = rx.wait_for(|now| *now >= deadline).await;
            })
        }
    }

    #[derive(Default)]
    struct Counts {
        skipped: AtomicU32,
        missed: AtomicU32,
    }

    impl Hooks for Counts {
        fn skipped(&self, _: Timestamp) {
            self.skipped.fetch_add(1, Ordering::SeqCst);
        }
        fn missed(&self, _: Timestamp) {
            self.missed.fetch_add(1, Ordering::SeqCst);
        }
        fn beat(&self) {}
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_tick_during_a_run_is_skipped_and_only_the_leader_runs() {
        let clock = ManualClock::new(ts("2026-01-01T00:00:00Z"));
        let (leader_tx, leader) = watch::channel(true);
        let (stop_tx, stop_rx) = watch::channel(false);
        let hooks = Arc::new(Counts::default());
        let started = Arc::new(AtomicU32::new(0));
        let (release_tx, release) = watch::channel(false);
        let loop_task = {
            let (started, release) = (started.clone(), release.clone());
            tokio::spawn(run_loop(
                clock.clone(),
                table("*/10 * * * * *", "UTC"),
                leader,
                stop_rx,
                hooks.clone(),
                move |_| {
                    let mut release = release.clone();
                    started.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let _ = release.wait_for(|r| *r).await;
                    }
                },
            ))
        };
        let advance = |secs| clock.advance(jiff::SignedDuration::from_secs(secs));
        tokio::task::yield_now().await;
        advance(10);
        until("the first run", || started.load(Ordering::SeqCst) == 1).await;
        advance(10);
        until("a skipped tick", || {
            hooks.skipped.load(Ordering::SeqCst) == 1
        })
        .await;
        advance(10);
        until("a second skipped tick", || {
            hooks.skipped.load(Ordering::SeqCst) == 2
        })
        .await;
        assert_eq!(
            started.load(Ordering::SeqCst),
            1,
            "never two runs of one schedule at once"
        );
        release_tx.send_replace(true);
        tokio::time::sleep(Duration::from_millis(20)).await;
        advance(10);
        until("the next run", || started.load(Ordering::SeqCst) == 2).await;
        // Not the leader: ticks pass without runs.
        leader_tx.send_replace(false);
        advance(10);
        advance(10);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(started.load(Ordering::SeqCst), 2);
        // A suspended process wakes long after its ticks: they are not caught up, one miss is
        // counted, and the next tick runs normally.
        leader_tx.send_replace(true);
        tokio::time::sleep(Duration::from_millis(20)).await;
        advance(3600);
        until("the missed tick", || {
            hooks.missed.load(Ordering::SeqCst) == 1
        })
        .await;
        advance(10);
        until("the run after the gap", || {
            started.load(Ordering::SeqCst) == 3
        })
        .await;
        assert_eq!(
            hooks.missed.load(Ordering::SeqCst),
            1,
            "an hour of ticks is one miss, not 360 runs"
        );
        stop_tx.send_replace(true);
        let left = loop_task.await.unwrap();
        assert!(left.is_some());
    }
}
