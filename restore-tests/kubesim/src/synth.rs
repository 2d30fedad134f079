//! Deterministic synthetic clusters for benchmarks: a realistic mix of ConfigMaps, Secrets,
//! Deployments, Services and custom resources of 0.5-2 KiB each, one namespace per 200 objects.

use base64::Engine as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};

/// Objects per namespace.
pub const PER_NAMESPACE: usize = 200;

/// The CRD the synthetic custom resources belong to; create it before them.
pub fn crd() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.synth.example.com"},
        "spec": {"group": "synth.example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

/// The namespaces for `n` objects.
pub fn namespaces(n: usize) -> impl Iterator<Item = Value> {
    (0..n.div_ceil(PER_NAMESPACE)).map(
        |i| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace(i)}}),
    )
}

fn namespace(i: usize) -> String {
    format!("synth-{i:04}")
}

/// `n` objects (not counting namespaces and the CRD), the same for the same `seed`.
pub fn objects(n: usize, seed: u64) -> impl Iterator<Item = Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(move |i| {
        let ns = namespace(i / PER_NAMESPACE);
        let app = format!("app-{}", i % 37);
        let tier = ["web", "db", "cache"][i % 3];
        let labels = json!({"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "synth", "tier": tier});
        // Target 0.5-2 KiB: a fixed skeleton plus a random payload.
        let payload_len = rng.random_range(300..1600);
        match i % 10 {
            0..=3 => json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{i}"), "namespace": ns, "labels": labels},
                "data": {"config.yaml": text(&mut rng, payload_len), "LOG_LEVEL": "info"}}),
            4..=5 => json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": format!("secret-{i}"), "namespace": ns, "labels": labels},
                "data": {"password": base64::engine::general_purpose::STANDARD.encode(text(&mut rng, payload_len * 3 / 4))}}),
            6..=7 => json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": format!("deploy-{i}"), "namespace": ns, "labels": labels,
                    "annotations": {"synth.example.com/notes": text(&mut rng, payload_len / 2)}},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": app}},
                    "template": {"metadata": {"labels": {"app.kubernetes.io/name": app}},
                        "spec": {"containers": [{"name": "main", "image": format!("registry.example.com/{app}:1.{}", i % 20),
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "env": [{"name": "MODE", "value": "production"}, {"name": "REPLICA", "value": i.to_string()}],
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}}]}}}}),
            8 => json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("svc-{i}"), "namespace": ns, "labels": labels,
                    "annotations": {"synth.example.com/notes": text(&mut rng, payload_len / 2)}},
                "spec": {"selector": {"app.kubernetes.io/name": app}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
            _ => json!({"apiVersion": "synth.example.com/v1", "kind": "Widget",
                "metadata": {"name": format!("widget-{i}"), "namespace": ns, "labels": labels},
                "spec": {"size": i % 7, "owner": app, "description": text(&mut rng, payload_len)}}),
        }
    })
}

/// Word-like text: compressible like real configuration, not random bytes.
fn text(rng: &mut StdRng, len: usize) -> String {
    const WORDS: &[&str] = &[
        "server",
        "listen",
        "port",
        "timeout",
        "replica",
        "cache",
        "enabled",
        "true",
        "false",
        "endpoint",
        "https",
        "metrics",
        "region",
        "us-east-1",
        "retry",
        "backoff",
        "level",
        "info",
        "debug",
        "pool",
        "size",
        "max",
        "min",
        "connections",
        "database",
        "primary",
        "secondary",
        "tls",
        "cert",
        "key",
    ];
    let mut s = String::with_capacity(len + 16);
    while s.len() < len {
        s.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        s.push(if rng.random_range(0..8) == 0 {
            '\n'
        } else {
            ' '
        });
        if rng.random_range(0..12) == 0 {
            s.push_str(&rng.random_range(0..100_000u32).to_string());
            s.push(' ');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_deterministic_and_sized() {
        let a: Vec<Value> = objects(50, 7).collect();
        let b: Vec<Value> = objects(50, 7).collect();
        assert_eq!(a, b);
        for o in &a {
            let len = o.to_string().len();
            assert!((400..=2600).contains(&len), "{len} bytes: {o}");
        }
        assert_eq!(namespaces(401).count(), 3);
    }
}
