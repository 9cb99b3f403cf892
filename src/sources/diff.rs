//! What changed between two sources.json files: sources added, removed, and changed (same
//! identity, see [`Source::identity`], other fields). `narinfo` and `last_modified` describe
//! the binary cache, not the source, and are not compared.

use std::collections::HashMap;

use serde::Serialize;

use super::Source;

#[derive(Debug, Default, Serialize)]
pub struct SourcesDiff<'a> {
    pub added: Vec<&'a Source>,
    pub removed: Vec<&'a Source>,
    pub changed: Vec<Change<'a>>,
}

#[derive(Debug, Serialize)]
pub struct Change<'a> {
    pub identity: String,
    /// The fields whose values differ.
    pub fields: Vec<String>,
    pub old: &'a Source,
    pub new: &'a Source,
}

/// Compares `old` with `new`; each list comes out in the order of the file it is from. Entries
/// that share an identity (in Guix, two packages with the same source) are paired in order.
pub fn diff<'a>(old: &'a [Source], new: &'a [Source]) -> SourcesDiff<'a> {
    let keyed = |sources: &'a [Source]| {
        let mut seen: HashMap<String, usize> = HashMap::new();
        sources
            .iter()
            .map(|s| {
                let identity = s.identity();
                let n = seen.entry(identity.clone()).or_default();
                *n += 1;
                ((identity, *n), s)
            })
            .collect::<Vec<_>>()
    };
    let (old, new) = (keyed(old), keyed(new));
    let old_by_key: HashMap<&(String, usize), &Source> = old.iter().map(|(k, s)| (k, *s)).collect();
    let new_by_key: HashMap<&(String, usize), &Source> = new.iter().map(|(k, s)| (k, *s)).collect();
    let mut result = SourcesDiff::default();
    for (key, source) in &old {
        if !new_by_key.contains_key(key) {
            result.removed.push(source);
        }
    }
    for (key, source) in &new {
        match old_by_key.get(key) {
            None => result.added.push(source),
            Some(previous) => {
                let fields = changed_fields(previous, source);
                if !fields.is_empty() {
                    result.changed.push(Change { identity: key.0.clone(), fields, old: previous, new: source });
                }
            }
        }
    }
    result
}

fn changed_fields(old: &Source, new: &Source) -> Vec<String> {
    let (serde_json::Value::Object(old), serde_json::Value::Object(new)) = (
        serde_json::to_value(old).expect("a source serialises"),
        serde_json::to_value(new).expect("a source serialises"),
    ) else {
        unreachable!("a source serialises to an object");
    };
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| !matches!(name.as_str(), "narinfo" | "last_modified"))
        .filter(|name| old.get(*name) != new.get(*name))
        .cloned()
        .collect()
}
