//! kubesim must never be the bottleneck of a lifeboat benchmark. This seeds a synthetic cluster
//! (default 100k objects), lists it all through kube-rs in pages of 500, and reports seeding
//! time, objects listed per second (wall, and per CPU-second of the server thread alone) and
//! memory against the size of the stored JSON.
//!
//! `cargo bench -p kubesim --bench list -- [--objects N] [--report FILE]`
//!
//! Targets: at least 100k objects/s listed on one core, 100k objects seeded in under 10 s,
//! memory under 3x the stored JSON.

use std::time::Instant;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// (VmRSS, VmHWM) of this process in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds used by one thread, from /proc (utime + stime in clock ticks of 1/100 s).
fn thread_cpu(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

fn main() -> anyhow::Result<()> {
    let n: usize = arg("--objects").map_or(Ok(100_000), |s| s.parse())?;
    let (rss_start, _) = memory();

    // The server runs on one thread of its own, so its CPU time can be read apart from the client.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let sim = kubesim::KubeSim::start().await.expect("kubesim");
            let stat = format!(
                "/proc/{}/stat",
                std::fs::read_link("/proc/thread-self")
                    .expect("procfs")
                    .display()
            );
            tx.send((
                sim.kubeconfig_path().to_path_buf(),
                sim.cluster().clone(),
                stat,
            ))
            .expect("send");
            // Keep serving until the process ends.
            let _sim = sim;
            futures::future::pending::<()>().await;
        });
    });
    let (kubeconfig, cluster, server_stat) = rx.recv()?;

    let seed_started = Instant::now();
    kubesim::seed::object(&cluster, kubesim::synth::crd(), "synth")?;
    for ns in kubesim::synth::namespaces(n) {
        kubesim::seed::object(&cluster, ns, "synth")?;
    }
    for obj in kubesim::synth::objects(n, 42) {
        kubesim::seed::object(&cluster, obj, "synth")?;
    }
    let seed_secs = seed_started.elapsed().as_secs_f64();
    let stored: usize = cluster.read().objects.values().map(|o| o.body.len()).sum();
    let (rss_seeded, _) = memory();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (listed, list_secs, server_cpu) = rt.block_on(async {
        let client = kubesim::client_for(&kubeconfig).await?;
        let types = [
            (GroupVersionKind::gvk("", "v1", "ConfigMap"), "configmaps"),
            (GroupVersionKind::gvk("", "v1", "Secret"), "secrets"),
            (
                GroupVersionKind::gvk("apps", "v1", "Deployment"),
                "deployments",
            ),
            (GroupVersionKind::gvk("", "v1", "Service"), "services"),
            (
                GroupVersionKind::gvk("synth.example.com", "v1", "Widget"),
                "widgets",
            ),
        ];
        let cpu_before = thread_cpu(&server_stat);
        let started = Instant::now();
        let mut listed = 0usize;
        for (gvk, plural) in types {
            let api: Api<DynamicObject> = Api::all_with(
                client.clone(),
                &ApiResource::from_gvk_with_plural(&gvk, plural),
            );
            let mut lp = ListParams::default().limit(500);
            loop {
                let page = api.list(&lp).await?;
                listed += page.items.len();
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(c) => lp = ListParams::default().limit(500).continue_token(&c),
                    None => break,
                }
            }
        }
        anyhow::Ok((
            listed,
            started.elapsed().as_secs_f64(),
            thread_cpu(&server_stat) - cpu_before,
        ))
    })?;
    let (rss_end, hwm) = memory();
    let server_mem = rss_seeded.saturating_sub(rss_start);

    let report = json!({
        "objects": n, "listed": listed,
        "seed_seconds": seed_secs,
        "list_seconds": list_secs,
        "listed_per_second_wall": listed as f64 / list_secs,
        "server_cpu_seconds": server_cpu,
        "listed_per_server_cpu_second": if server_cpu > 0.0 { listed as f64 / server_cpu } else { f64::INFINITY },
        "stored_json_bytes": stored,
        "server_memory_bytes": server_mem,
        "memory_over_stored_json": server_mem as f64 / stored as f64,
        "rss_end_bytes": rss_end, "peak_rss_bytes": hwm,
    });
    let mib = |b: u64| b as f64 / 1_048_576.0;
    println!(
        "kubesim list benchmark, {n} objects (+{} namespaces)",
        n.div_ceil(kubesim::synth::PER_NAMESPACE)
    );
    println!(
        "  seeding            {seed_secs:>8.2} s   ({:.0} objects/s)",
        n as f64 / seed_secs
    );
    println!(
        "  listing (kube-rs)  {list_secs:>8.2} s   ({:.0} objects/s wall, client parsing included)",
        listed as f64 / list_secs
    );
    println!(
        "  server CPU         {server_cpu:>8.2} s   ({:.0} objects/s per server core)",
        listed as f64 / server_cpu.max(0.01)
    );
    println!("  stored JSON        {:>8.1} MiB", mib(stored as u64));
    println!(
        "  server memory      {:>8.1} MiB   ({:.2}x the stored JSON)",
        mib(server_mem),
        server_mem as f64 / stored as f64
    );
    println!("  peak RSS (process) {:>8.1} MiB", mib(hwm));
    assert_eq!(listed, n, "every object listed exactly once");
    if let Some(path) = arg("--report") {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        println!("report written to {path}");
    }
    Ok(())
}
