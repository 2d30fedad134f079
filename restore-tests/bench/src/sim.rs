//! kubesim servers for the benchmark, each on a thread of its own (a current-thread runtime),
//! as kubesim's `list` bench runs it: the server never competes with the measured client for
//! a runtime worker, and its CPU time can be read apart (`/proc/<tid>/stat`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use kubesim::Cluster;
use serde_json::Value;

/// A running kubesim; dropping it stops the server and frees its objects.
#[derive(Debug)]
pub struct Sim {
    kubeconfig: PathBuf,
    cluster: Arc<Cluster>,
    stat: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sim {
    pub fn start() -> anyhow::Result<Sim> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("kubesim".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(anyhow::anyhow!("kubesim runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let sim = match kubesim::KubeSim::start().await {
                        Ok(sim) => sim,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let stat = std::fs::read_link("/proc/thread-self")
                        .map(|p| format!("/proc/{}/stat", p.display()))
                        .unwrap_or_default();
                    let _ = tx.send(Ok((
                        sim.kubeconfig_path().to_path_buf(),
                        sim.cluster().clone(),
                        stat,
                    )));
                    let _ = stopped.await;
                    drop(sim);
                });
            })
            .context("starting the kubesim thread")?;
        let (kubeconfig, cluster, stat) = rx.recv().context("kubesim thread ended")??;
        Ok(Sim {
            kubeconfig,
            cluster,
            stat,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// CPU seconds the server thread has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        thread_cpu(&self.stat)
    }

    /// Creates one object without HTTP.
    pub fn seed(&self, obj: Value) -> Result<Value, kubesim::SeedError> {
        kubesim::seed::object(&self.cluster, obj, "bench")
    }

    /// Bytes of compact JSON the server stores (managedFields included).
    pub fn stored_json_bytes(&self) -> u64 {
        self.cluster
            .read()
            .objects
            .values()
            .map(|o| o.body.len() as u64)
            .sum()
    }

    /// Objects stored, system namespaces included.
    pub fn stored_objects(&self) -> u64 {
        self.cluster.read().objects.len() as u64
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// utime + stime of one thread in seconds (clock ticks of 1/100 s).
fn thread_cpu(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

/// Seeds kubesim's synthetic cluster of `n` objects (the CRD, one namespace per 200 objects,
/// then the objects) and returns the seconds it took.
pub fn seed_synthetic(sim: &Sim, n: usize) -> anyhow::Result<f64> {
    let started = std::time::Instant::now();
    sim.seed(kubesim::synth::crd())?;
    for ns in kubesim::synth::namespaces(n) {
        sim.seed(ns)?;
    }
    for obj in kubesim::synth::objects(n, 42) {
        sim.seed(obj)?;
    }
    Ok(started.elapsed().as_secs_f64())
}
