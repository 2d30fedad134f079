//! Leader election against kubesim: acquisition, renewal, one leader among two, takeover after
//! a crash or a release, stepping down when renewals fail, and Lease fields as client-go
//! writes them. Short timings (lease 2 s, renew deadline 1 s, retry 200 ms) keep it fast;
//! every wait is a poll with a deadline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kubesim::{Fault, KubeSim};
use lifeboat::daemon::leader::{Config, Elector};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const NAMESPACE: &str = "default";
const LEASE: &str = "lifeboat";
const LEASE_DURATION: Duration = Duration::from_secs(2);
const RENEW_DEADLINE: Duration = Duration::from_secs(1);
const RETRY: Duration = Duration::from_millis(200);
/// Room for request latency and scheduling on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(500);

fn config(identity: &str) -> Config {
    Config {
        lease_duration: LEASE_DURATION,
        renew_deadline: RENEW_DEADLINE,
        retry_period: RETRY,
        ..Config::new(NAMESPACE, LEASE, identity)
    }
}

/// One running elector.
struct Replica {
    identity: String,
    leader: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    changes: Arc<Mutex<Vec<bool>>>,
}

impl Replica {
    fn start(sim: &KubeSim, identity: &str) -> Replica {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&changes);
        let elector = Elector::new(sim.client(), config(identity))
            .on_change(move |leading| seen.lock().unwrap().push(leading));
        let (tx, leader) = watch::channel(false);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(elector.run(tx, async move {
            let _ = stopped.await;
        }));
        Replica {
            identity: identity.to_string(),
            leader,
            stop: Some(stop),
            task,
            changes,
        }
    }

    fn leads(&self) -> bool {
        *self.leader.borrow()
    }

    fn changes(&self) -> Vec<bool> {
        self.changes.lock().unwrap().clone()
    }

    /// Signals shutdown and waits until the elector has released the Lease and returned.
    async fn shut_down(mut self) {
        let _ = self.stop.take().expect("not stopped yet").send(());
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("the elector returns promptly after shutdown")
            .expect("the elector task does not panic");
    }

    /// Kills the elector without letting it release, as a crashed pod would.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Polls `check` every 10 ms until it holds; panics with `what` after `within`.
async fn wait_until(within: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls the Lease until `check` holds; returns it.
async fn wait_for_lease(
    sim: &KubeSim,
    within: Duration,
    what: &str,
    check: impl Fn(&LeaseSpec) -> bool,
) -> LeaseSpec {
    let api: Api<Lease> = Api::namespaced(sim.client(), NAMESPACE);
    let start = Instant::now();
    loop {
        if let Some(spec) = api.get_opt(LEASE).await.unwrap().and_then(|l| l.spec)
            && check(&spec)
        {
            return spec;
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn lease(sim: &KubeSim) -> LeaseSpec {
    let api: Api<Lease> = Api::namespaced(sim.client(), NAMESPACE);
    api.get(LEASE).await.unwrap().spec.unwrap()
}

/// The Lease as the API server stores it, to check the wire format of its times.
async fn lease_json(sim: &KubeSim) -> serde_json::Value {
    let req = http::Request::get(format!(
        "/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{LEASE}"
    ))
    .body(Vec::new())
    .unwrap();
    let text = sim.client().request_text(req).await.unwrap();
    serde_json::from_str(&text).unwrap()
}

fn holder(spec: &LeaseSpec) -> &str {
    spec.holder_identity.as_deref().unwrap_or_default()
}

/// Waits until exactly one of `replicas` leads and returns its index.
async fn one_leader(replicas: &[&Replica]) -> usize {
    wait_until(LEASE_DURATION + SLACK, "one replica leads", || {
        replicas.iter().any(|r| r.leads())
    })
    .await;
    let leaders: Vec<usize> = (0..replicas.len())
        .filter(|i| replicas[*i].leads())
        .collect();
    assert_eq!(leaders.len(), 1, "exactly one leader");
    leaders[0]
}

fn is_micro_time(v: &serde_json::Value) -> bool {
    // 2025-01-02T03:04:05.123456Z
    v.as_str().is_some_and(|s| {
        s.len() == 27
            && s.ends_with('Z')
            && s.as_bytes()[19] == b'.'
            && s[20..26].bytes().all(|b| b.is_ascii_digit())
            && s.parse::<Timestamp>().is_ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elector_creates_an_absent_lease_and_keeps_renewing_it() {
    let sim = KubeSim::start().await.unwrap();
    let a = Replica::start(&sim, "a");
    wait_until(Duration::from_secs(2), "a leads", || a.leads()).await;

    let first = lease(&sim).await;
    assert_eq!(holder(&first), "a");
    assert_eq!(first.lease_duration_seconds, Some(2));
    assert_eq!(first.lease_transitions, Some(0));
    assert!(first.acquire_time.is_some());

    let json = lease_json(&sim).await;
    let spec = &json["spec"];
    assert_eq!(spec["holderIdentity"], "a");
    assert_eq!(spec["leaseDurationSeconds"], 2);
    assert_eq!(spec["leaseTransitions"], 0);
    assert!(
        is_micro_time(&spec["renewTime"]),
        "renewTime is a MicroTime: {spec}"
    );
    assert!(
        is_micro_time(&spec["acquireTime"]),
        "acquireTime is a MicroTime: {spec}"
    );

    // Two further renewals, each within about a retry period.
    let mut last = first.renew_time.clone().unwrap();
    for _ in 0..2 {
        let renewed = wait_for_lease(&sim, RETRY * 3 + SLACK, "renewTime advances", |s| {
            s.renew_time.as_ref().is_some_and(|t| *t > last)
        })
        .await;
        assert_eq!(holder(&renewed), "a");
        assert_eq!(
            renewed.acquire_time, first.acquire_time,
            "a renewal keeps acquireTime"
        );
        assert_eq!(
            renewed.lease_transitions,
            Some(0),
            "a renewal is no transition"
        );
        last = renewed.renew_time.unwrap();
    }
    assert!(a.leads());
    assert_eq!(a.changes(), vec![true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_electors_exactly_one_leads_at_every_observation() {
    let sim = KubeSim::start().await.unwrap();
    let a = Replica::start(&sim, "a");
    let b = Replica::start(&sim, "b");
    let first = one_leader(&[&a, &b]).await;

    let until = Instant::now() + Duration::from_secs(3);
    let mut observations = 0;
    while Instant::now() < until {
        assert!(a.leads() ^ b.leads(), "exactly one of a and b leads");
        observations += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(observations > 50);
    let leader = if a.leads() { &a } else { &b };
    assert_eq!([&a, &b][first].identity, leader.identity, "no flapping");
    assert_eq!(holder(&lease(&sim).await), leader.identity);
    assert_eq!(leader.changes(), vec![true]);
    let follower = if a.leads() { &b } else { &a };
    assert!(follower.changes().is_empty(), "the follower never led");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_takes_over_from_a_crashed_leader_once_the_lease_expires() {
    let sim = KubeSim::start().await.unwrap();
    let a = Replica::start(&sim, "a");
    wait_until(Duration::from_secs(2), "a leads", || a.leads()).await;
    let b = Replica::start(&sim, "b");
    // Let b see the Lease held, so its expiry clock runs from a real observation.
    tokio::time::sleep(RETRY * 2).await;
    assert!(!b.leads());
    let before = lease(&sim).await;

    let crashed = Instant::now();
    a.kill().await;
    wait_until(LEASE_DURATION + RETRY + SLACK, "b takes over", || b.leads()).await;
    let took = crashed.elapsed();
    assert!(
        took >= LEASE_DURATION.saturating_sub(RETRY + Duration::from_millis(100)),
        "b waited for the Lease to expire ({took:?})"
    );

    let after = lease(&sim).await;
    assert_eq!(holder(&after), "b");
    assert_eq!(
        after.lease_transitions,
        before.lease_transitions.map(|t| t + 1),
        "a takeover counts one transition"
    );
    assert!(
        after.acquire_time > before.acquire_time,
        "a new term starts"
    );
    assert!(is_micro_time(&lease_json(&sim).await["spec"]["renewTime"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_takes_over_within_a_retry_period_after_a_release() {
    let sim = KubeSim::start().await.unwrap();
    let a = Replica::start(&sim, "a");
    wait_until(Duration::from_secs(2), "a leads", || a.leads()).await;
    let b = Replica::start(&sim, "b");
    tokio::time::sleep(RETRY * 2).await;
    assert!(!b.leads());

    let mut a_leader = a.leader.clone();
    let stopping = Instant::now();
    a.shut_down().await;
    assert!(
        !*a_leader.borrow_and_update(),
        "a stops leading on shutdown"
    );
    wait_until(RETRY + SLACK, "b takes over", || b.leads()).await;
    assert!(
        stopping.elapsed() < RETRY + SLACK,
        "b took over after {:?}",
        stopping.elapsed()
    );
    let spec = lease(&sim).await;
    assert_eq!(holder(&spec), "b");
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_clears_the_holder_like_client_go() {
    let sim = KubeSim::start().await.unwrap();
    let a = Replica::start(&sim, "a");
    wait_until(Duration::from_secs(2), "a leads", || a.leads()).await;
    let changes = Arc::clone(&a.changes);
    a.shut_down().await;

    assert_eq!(*changes.lock().unwrap(), vec![true, false]);
    let spec = lease(&sim).await;
    assert_eq!(spec.holder_identity, None, "holderIdentity cleared");
    assert_eq!(spec.lease_duration_seconds, Some(1));
    assert_eq!(spec.lease_transitions, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_of_a_follower_leaves_the_lease_alone() {
    let sim = KubeSim::start().await.unwrap();
    let a = Replica::start(&sim, "a");
    wait_until(Duration::from_secs(2), "a leads", || a.leads()).await;
    let b = Replica::start(&sim, "b");
    tokio::time::sleep(RETRY * 2).await;
    let changes = Arc::clone(&b.changes);
    b.shut_down().await;

    assert!(changes.lock().unwrap().is_empty(), "b never led");
    let spec = lease(&sim).await;
    assert_eq!(holder(&spec), "a", "b did not release a's Lease");
    assert_eq!(spec.lease_duration_seconds, Some(2));
    assert_eq!(spec.lease_transitions, Some(0));
    assert!(a.leads());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_whose_renewals_fail_steps_down_after_the_renew_deadline() {
    let sim = KubeSim::start().await.unwrap();
    let a = Replica::start(&sim, "a");
    wait_until(Duration::from_secs(2), "a leads", || a.leads()).await;
    // One successful renewal first, so a leads from a PUT, not only from the create.
    let acquired = lease(&sim).await.renew_time.unwrap();
    wait_for_lease(&sim, RETRY * 3 + SLACK, "a renews", |s| {
        s.renew_time.as_ref().is_some_and(|t| *t > acquired)
    })
    .await;

    let fault = sim.add_fault(
        Fault::status("/apis/coordination.k8s.io/v1/namespaces/*/leases/*", 500).method("PUT"),
    );
    let took = wait_until(RENEW_DEADLINE + SLACK, "a steps down", || !a.leads()).await;
    assert!(
        took >= RENEW_DEADLINE.saturating_sub(RETRY + Duration::from_millis(100)),
        "a kept leading through failures until the deadline ({took:?})"
    );
    assert_eq!(a.changes(), vec![true, false]);
    // Still failing: a does not lead again meanwhile.
    tokio::time::sleep(RETRY * 3).await;
    assert!(!a.leads());

    // Once the API server accepts writes again, the Lease (still naming a) is a's again.
    sim.remove_fault(fault);
    wait_until(RETRY * 3 + SLACK, "a leads again", || a.leads()).await;
    assert_eq!(a.changes(), vec![true, false, true]);
    let spec = lease(&sim).await;
    assert_eq!(holder(&spec), "a");
    assert_eq!(
        spec.lease_transitions,
        Some(0),
        "no other holder came between"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_stops_leading_when_another_holder_writes_the_lease() {
    let sim = KubeSim::start().await.unwrap();
    let a = Replica::start(&sim, "a");
    wait_until(Duration::from_secs(2), "a leads", || a.leads()).await;

    // Someone else (another replica, or a person) takes the Lease with a compare-and-swap.
    let api: Api<Lease> = Api::namespaced(sim.client(), NAMESPACE);
    let mut taken = api.get(LEASE).await.unwrap();
    let spec = taken.spec.as_mut().unwrap();
    spec.holder_identity = Some("intruder".into());
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    spec.lease_transitions = spec.lease_transitions.map(|t| t + 1);
    loop {
        match api.replace(LEASE, &PostParams::default(), &taken).await {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // a renewed in between: read again, as any writer must.
                let fresh = api.get(LEASE).await.unwrap();
                taken.metadata.resource_version = fresh.metadata.resource_version;
            }
            Err(e) => panic!("replace failed: {e}"),
        }
    }
    wait_until(RETRY + SLACK, "a steps down", || !a.leads()).await;
    assert_eq!(a.changes(), vec![true, false]);

    // The intruder never renews, so a takes the Lease back once it expires.
    wait_until(LEASE_DURATION + RETRY + SLACK, "a leads again", || {
        a.leads()
    })
    .await;
    let spec = lease(&sim).await;
    assert_eq!(holder(&spec), "a");
    assert_eq!(spec.lease_transitions, Some(2));
}
