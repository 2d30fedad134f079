//! YAML as kubectl reads it (sigs.k8s.io/yaml: YAML to JSON), via serde-saphyr.

use serde_json::Value;

/// Parses one YAML (or JSON) document.
pub fn from_str(text: &str) -> Result<Value, serde_saphyr::Error> {
    serde_saphyr::from_str(text)
}

/// Parses every document of a multi-document stream; empty documents are skipped, as kubectl
/// skips them.
pub fn documents(text: &str) -> Result<Vec<Value>, serde_saphyr::Error> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}
