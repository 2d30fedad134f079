//! The Kubernetes API: connecting, discovering resource types, and listing them page by page.
//!
//! Lists are fetched as raw bytes and each item is kept as the server wrote it (only its type
//! meta is added where the server leaves it out), so a backup never loses a field that a
//! typed client would not know, and never spends time building trees of values.

pub mod apply;
pub mod discovery;
pub mod list;
pub mod retry;
pub mod scope;
pub mod selector;

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

/// Why the cluster could not be reached or read.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot load the kubeconfig{}: {source}; pass --kubeconfig or set KUBECONFIG, or run inside a cluster with a service account", path.as_deref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Kubeconfig {
        path: Option<std::path::PathBuf>,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{what}: {message}")]
    Api {
        what: String,
        /// HTTP status, 0 when the request never got an answer.
        code: u16,
        message: String,
        retryable: bool,
        /// How long the server asked us to wait (Retry-After), if it said.
        retry_after: Option<std::time::Duration>,
    },
    #[error("{what}: the response is not what a Kubernetes API server sends: {message}")]
    Protocol { what: String, message: String },
}

impl ClusterError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClusterError::Api {
                retryable: true,
                ..
            }
        )
    }

    pub fn code(&self) -> u16 {
        match self {
            ClusterError::Api { code, .. } => *code,
            _ => 0,
        }
    }
}

/// A connection to a cluster: its client and the name it goes by in manifests.
#[derive(Clone)]
pub struct Connection {
    pub client: kube::Client,
    /// `cluster.name` from the config, else the kubeconfig context, else `kubernetes`.
    pub name: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Connects using an explicit kubeconfig and context when given; otherwise `KUBECONFIG`, the
/// default kubeconfig, or the in-cluster service account, as kubectl does.
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    name: Option<&str>,
) -> Result<Connection, ClusterError> {
    let options = KubeConfigOptions {
        context: context.map(String::from),
        ..KubeConfigOptions::default()
    };
    let err = |source: Box<dyn std::error::Error + Send + Sync>| ClusterError::Kubeconfig {
        path: kubeconfig.map(Path::to_path_buf),
        source,
    };
    let (config, context_name) = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| err(Box::new(e)))?;
            let current = context
                .map(String::from)
                .or_else(|| kc.current_context.clone());
            (
                kube::Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .map_err(|e| err(Box::new(e)))?,
                current,
            )
        }
        None if context.is_some() => (
            kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| err(Box::new(e)))?,
            context.map(String::from),
        ),
        None => {
            let current = Kubeconfig::read().ok().and_then(|kc| kc.current_context);
            (
                kube::Config::infer().await.map_err(|e| err(Box::new(e)))?,
                current,
            )
        }
    };
    let client = kube::Client::try_from(config).map_err(|e| err(Box::new(e)))?;
    let name = name
        .map(String::from)
        .or(context_name)
        .unwrap_or_else(|| "kubernetes".to_string());
    Ok(Connection { client, name })
}

/// The API server's `gitVersion`.
pub async fn server_version(client: &kube::Client) -> Result<String, ClusterError> {
    retry::with_retry(
        &retry::Policy::default(),
        "GET /version",
        &crate::events::Observers::default(),
        || async {
            client
                .apiserver_version()
                .await
                .map(|v| v.git_version)
                .map_err(|e| retry::classify("GET /version", &e))
        },
    )
    .await
}
