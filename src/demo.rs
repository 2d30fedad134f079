//! `lifeboat demo`: the whole backup and restore path on a laptop with nothing installed. An
//! embedded kubesim is seeded with the sample application of `config/demo/` (compiled in, so
//! the binary runs anywhere), backed up into a local directory, listed and described; then a
//! drill restores the backup into a second embedded cluster and checks every object.

use std::fmt::Write as _;
use std::path::Path;

use crate::archive::manifest::Manifest;
use crate::backup;
use crate::catalog;
use crate::cluster::Connection;
use crate::events::Observers;
use crate::report;
use crate::setup;
use crate::store::{Settings, Store};
use crate::volumes::ec2::AwsEc2;

/// The sample application, in the order `kubectl create -f config/demo/` would create it.
pub const SAMPLE_APP: [(&str, &str); 6] = [
    (
        "00-namespace.yaml",
        include_str!("../config/demo/00-namespace.yaml"),
    ),
    ("01-crd.yaml", include_str!("../config/demo/01-crd.yaml")),
    ("10-rbac.yaml", include_str!("../config/demo/10-rbac.yaml")),
    (
        "20-config.yaml",
        include_str!("../config/demo/20-config.yaml"),
    ),
    (
        "30-workloads.yaml",
        include_str!("../config/demo/30-workloads.yaml"),
    ),
    (
        "40-custom-resources.yaml",
        include_str!("../config/demo/40-custom-resources.yaml"),
    ),
];

/// What the demo did.
#[derive(Debug)]
pub struct DemoOutcome {
    pub manifest: Manifest,
    pub drill: crate::drill::DrillReport,
    /// The report for people: what happened, the backup list and the description.
    pub text: String,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
#[error("demo: {0}")]
pub struct DemoError(String);

fn fail(e: impl std::fmt::Display) -> DemoError {
    DemoError(e.to_string())
}

/// Runs the demo, keeping its backups in `dir` (created if missing).
pub async fn run(dir: &Path, observers: &Observers) -> Result<DemoOutcome, DemoError> {
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
    let dir = dir.canonicalize().map_err(fail)?;
    let sim = kubesim::KubeSim::start().await.map_err(fail)?;
    let mut seeded = 0;
    for (file, text) in SAMPLE_APP {
        seeded += sim
            .seed_yaml(text)
            .map_err(|e| fail(format!("seeding {file}: {e}")))?
            .len();
    }
    let store = Store::open(&format!("file://{}", dir.display()), &Settings::default())
        .await
        .map_err(fail)?;
    let conn = Connection {
        client: sim.client(),
        name: "demo".into(),
    };
    let name = format!("demo-{}", jiff::Timestamp::now().strftime("%Y%m%d%H%M%S"));
    let manifest = backup::run(
        &conn,
        &store,
        &backup::Request::new(&name),
        None::<&AwsEc2>,
        observers,
    )
    .await
    .map_err(fail)?;
    let (summaries, _) = catalog::list(&store).await.map_err(fail)?;

    // A second, empty cluster: the drill restores the backup there and reads it all back.
    let staging = kubesim::KubeSim::start().await.map_err(fail)?;
    let target = Connection {
        client: staging.client(),
        name: "demo-staging".into(),
    };
    let mut req = crate::restore::Request::new(&format!("{name}-drill"), &name);
    req.restore_volumes = false;
    let drill = crate::drill::run(
        &store,
        &target,
        "embedded",
        &req,
        None::<&AwsEc2>,
        observers,
    )
    .await
    .map_err(fail)?;

    let mut text = String::new();
    let _ = writeln!(
        text,
        "Started an embedded cluster ({}) with the sample application of config/demo/ ({seeded} objects).",
        sim.url()
    );
    let _ = writeln!(
        text,
        "Backed it up into {} as {name}: {} objects, {} archive, phase {}.\n",
        store.url(),
        manifest.item_count,
        report::bytes(manifest.archive.size),
        manifest.phase
    );
    let _ = writeln!(text, "$ lifeboat backup list");
    let mut t = report::Table::new(&["NAME", "PHASE", "ITEMS", "SIZE"]);
    for s in &summaries {
        t.row(vec![
            s.name.clone(),
            s.phase.to_string(),
            s.item_count.to_string(),
            report::bytes(s.archive_size),
        ]);
    }
    text.push_str(&t.render());
    let _ = writeln!(text, "\n$ lifeboat backup describe {name}");
    text.push_str(&setup::describe_text(&manifest, None));
    let _ = writeln!(
        text,
        "\n$ lifeboat drill --from-backup {name} --target embedded"
    );
    text.push_str(&setup::drill_text(&drill));
    let _ = writeln!(
        text,
        "\nRead the archive by hand: zstd -dc {}/{} | tar -t",
        dir.display(),
        manifest.archive.key
    );
    Ok(DemoOutcome {
        manifest,
        drill,
        text,
    })
}
