//! kubesim: an in-memory Kubernetes API server that the real `kubectl` and kube-rs accept.
//!
//! It exists so that lifeboat's tests, benchmarks and demo have a cluster on machines where no
//! real one can run. Its worth is its fidelity: the surface it serves was recorded from what
//! kubectl 1.32 and kube-rs 5 actually send (see `README.md` in this crate for the deviations
//! from a real API server).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let sim = kubesim::KubeSim::start().await?;
//! sim.seed_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n")?;
//! let client = sim.client();
//! # let _ = client; Ok(()) }
//! ```

pub mod cluster;
pub mod discovery;
mod faults;
pub mod kubectl;
pub mod openapi;
pub mod patch;
pub mod registry;
pub mod seed;
pub mod selector;
mod server;
pub mod status;
pub mod store;
pub mod synth;
pub mod validate;
pub mod watch;
pub mod yaml;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::Value;
use tokio::net::TcpListener;

pub use cluster::Cluster;
pub use faults::{Fault, FaultAction, FaultId};
pub use seed::SeedError;
pub use server::RequestRecord;

/// A running kubesim: its address, a kubeconfig for it and a client. Dropping it stops the
/// server and closes every connection.
pub struct KubeSim {
    addr: SocketAddr,
    url: String,
    kubeconfig: PathBuf,
    _dir: Option<tempfile::TempDir>,
    client: kube::Client,
    shared: Arc<server::Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// Options for [`KubeSim::builder`].
#[derive(Debug, Default)]
pub struct Builder {
    listen: Option<SocketAddr>,
    kubeconfig: Option<PathBuf>,
    bookmark_interval: Option<std::time::Duration>,
    history: Option<usize>,
}

impl Builder {
    /// Address to bind; default `127.0.0.1:0` (a free port).
    #[must_use]
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Where to write the kubeconfig; default a file in a temporary directory owned by the handle.
    #[must_use]
    pub fn kubeconfig_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(path.into());
        self
    }

    /// How often watches with `allowWatchBookmarks` get a bookmark (default 5 s).
    #[must_use]
    pub fn bookmark_interval(mut self, every: std::time::Duration) -> Self {
        self.bookmark_interval = Some(every);
        self
    }

    /// How many events the watch history keeps (default 20 000); a watch from an older
    /// revision gets the 410 Expired ERROR event.
    #[must_use]
    pub fn watch_history(mut self, events: usize) -> Self {
        self.history = Some(events);
        self
    }

    pub async fn start(self) -> anyhow::Result<KubeSim> {
        let listen = self
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let (kubeconfig, dir) = if let Some(p) = self.kubeconfig {
            (p, None)
        } else {
            let dir = tempfile::tempdir().context("creating a directory for the kubeconfig")?;
            (dir.path().join("kubeconfig"), Some(dir))
        };
        write_kubeconfig(&kubeconfig, &url)?;
        let cluster = Arc::new(Cluster::new());
        if let Some(n) = self.history {
            cluster.set_history_limit(n);
        }
        let mut shared = server::Shared::new(cluster);
        if let Some(i) = self.bookmark_interval {
            shared.bookmark_interval = i;
        }
        let shared = Arc::new(shared);
        let task = tokio::spawn(server::serve(listener, shared.clone()));
        let client = client_for(&kubeconfig).await?;
        Ok(KubeSim {
            addr,
            url,
            kubeconfig,
            _dir: dir,
            client,
            shared,
            task,
        })
    }
}

impl std::fmt::Debug for KubeSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSim")
            .field("url", &self.url)
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

impl KubeSim {
    /// Starts a server on a free loopback port with a kubeconfig in a temporary directory.
    pub async fn start() -> anyhow::Result<KubeSim> {
        Builder::default().start().await
    }

    pub fn builder() -> Builder {
        Builder::default()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kube-rs client for this server (cheap to clone).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The cluster behind the server, for direct access without HTTP (fast seeding in benchmarks).
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.shared.cluster
    }

    /// Creates every object of a multi-document YAML text, as `kubectl create -f` would.
    pub fn seed_yaml(&self, yaml: &str) -> Result<Vec<Value>, SeedError> {
        seed::yaml(&self.shared.cluster, yaml, "seed")
    }

    /// Creates one object (JSON with apiVersion and kind) without going through HTTP.
    pub fn seed_object(&self, obj: Value) -> Result<Value, SeedError> {
        seed::object(&self.shared.cluster, obj, "seed")
    }

    /// Creates every `*.yaml` of a directory, in file-name order.
    pub fn seed_dir(&self, dir: impl AsRef<Path>) -> Result<Vec<Value>, SeedError> {
        seed::dir(&self.shared.cluster, dir.as_ref())
    }

    /// Every request served so far (method, path, query, status), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests()
    }

    /// Forgets the request log (e.g. after seeding, before the step under test).
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// Injects a fault; it applies to requests that start after this call.
    pub fn add_fault(&self, fault: Fault) -> FaultId {
        self.shared.faults.add(fault)
    }

    pub fn remove_fault(&self, id: FaultId) {
        self.shared.faults.remove(id);
    }

    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// Expires every continue token issued so far, as an etcd compaction does.
    pub fn compact(&self) {
        self.shared.cluster.compact();
    }
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The kubeconfig kubectl and kube-rs both accept for a plain-HTTP server; written to a
/// temporary file first so a reader never sees half of it.
pub fn write_kubeconfig(path: &Path, url: &str) -> anyhow::Result<()> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: {url}\ncontexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: kubesim\n    namespace: default\ncurrent-context: kubesim\nusers:\n- name: kubesim\n  user:\n    token: kubesim\n"
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A kube-rs client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(kube::Client::try_from(config)?)
}

/// Serves an already-built cluster on a listener (used by the binary).
pub async fn serve(listener: TcpListener, cluster: Arc<Cluster>) {
    server::serve(listener, Arc::new(server::Shared::new(cluster))).await;
}
