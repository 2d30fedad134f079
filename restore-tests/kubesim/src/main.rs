//! `kubesim --listen 127.0.0.1:0 --kubeconfig-out FILE [--seed DIR]...`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;

/// An in-memory Kubernetes API server for tests, benchmarks and demos.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write a kubeconfig for this server here (plain HTTP, dummy token).
    #[arg(long, value_name = "FILE")]
    kubeconfig_out: Option<PathBuf>,
    /// Create every object of every *.yaml in DIR, in file-name order, before serving.
    /// May be given several times; directories are seeded in the order given.
    #[arg(long, value_name = "DIR")]
    seed: Vec<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let cluster = Arc::new(kubesim::Cluster::new());
    for dir in &args.seed {
        let created = kubesim::seed::dir(&cluster, dir)
            .with_context(|| format!("seeding {}", dir.display()))?;
        eprintln!("seeded {} objects from {}", created.len(), dir.display());
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    if let Some(path) = &args.kubeconfig_out {
        kubesim::write_kubeconfig(path, &url)?;
    }
    println!("{url}");
    tokio::select! {
        () = kubesim::serve(listener, cluster) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
