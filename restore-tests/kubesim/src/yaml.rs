//! YAML as kubectl reads it (sigs.k8s.io/yaml: YAML to JSON), via serde-saphyr.

use serde_json::Value;

/// Parses one YAML (or JSON) document.
pub fn from_str(text: &str) -> Result<Value, serde_saphyr::Error> {
    serde_saphyr::from_str(text)
}

/// Parses every document of a multi-document stream; empty documents are skipped, as kubectl
/// skips them.
///
/// Seed files are the operator's own and can hold a whole cluster (kubectl sets no limit), so
/// the parser's hostile-input budget is raised to what a 100k-object seed needs.
pub fn documents(text: &str) -> Result<Vec<Value>, serde_saphyr::Error> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 10_000_000,
            max_nodes: 1_000_000_000,
            max_events: 1_000_000_000,
            max_total_scalar_bytes: 1 << 34,
            max_reader_input_bytes: None,
        },
    };
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}
