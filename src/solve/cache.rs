//! Build cache keys and miss explanations.
//!
//! A step's key is the sha256 of its parent state's key and a map of named inputs: the instruction as
//! expanded, the content hash of what it reads (context files, mounted stages), the build args in scope.
//! Keeping the inputs by name in each cache record lets a miss say *which* input differs from the nearest
//! cached candidate with the same parent, which is what users of other builders keep asking for.

use crate::digest::Digest;
use crate::store::Store;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct StepKey {
    pub parent: Digest,
    pub inputs: BTreeMap<String, String>,
    pub key: Digest,
}

impl StepKey {
    pub fn new(parent: &Digest, inputs: BTreeMap<String, String>) -> Self {
        // serde_json serializes a BTreeMap in key order, so this text is canonical.
        let body = serde_json::json!({ "parent": parent.to_string(), "inputs": inputs });
        let key = Digest::of_bytes(body.to_string().as_bytes());
        StepKey {
            parent: parent.clone(),
            inputs,
            key,
        }
    }
}

/// Says why `key` missed: compares its inputs with the cached steps that share its parent.
pub fn explain_miss(store: &Store, key: &StepKey) -> String {
    let candidates = store
        .cache_candidates(Some(&key.parent))
        .unwrap_or_default();
    if candidates.is_empty() {
        return "no cached step has the same parent state (an earlier step or the base changed, or this is the first build)"
            .to_string();
    }
    // The nearest candidate is the one with the fewest differing inputs.
    let mut best: Option<Vec<String>> = None;
    for (_k, rec) in &candidates {
        let mut diffs = Vec::new();
        for (name, value) in &key.inputs {
            match rec.inputs.get(name) {
                Some(v) if v == value => {}
                Some(v) => diffs.push(format!("{name} changed ({} -> {})", short(v), short(value))),
                None => diffs.push(format!("{name} is new ({})", short(value))),
            }
        }
        for name in rec.inputs.keys() {
            if !key.inputs.contains_key(name) {
                diffs.push(format!("{name} was removed"));
            }
        }
        if best.as_ref().is_none_or(|b| diffs.len() < b.len()) {
            best = Some(diffs);
        }
    }
    match best {
        Some(d) if !d.is_empty() => d.join("; "),
        _ => "a cached step matched every input but its layer is gone from the store".to_string(),
    }
}

fn short(v: &str) -> String {
    let one_line = v.replace('\n', "\\n");
    if one_line.chars().count() > 60 {
        let s: String = one_line.chars().take(57).collect();
        format!("{s}...")
    } else {
        one_line
    }
}
