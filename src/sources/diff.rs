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

/// Compares `old` with `new`; each list comes out in the order of the file it is from.
pub fn diff<'a>(old: &'a [Source], new: &'a [Source]) -> SourcesDiff<'a> {
    let old_by_identity: HashMap<String, &Source> = old.iter().map(|s| (s.identity(), s)).collect();
    let new_by_identity: HashMap<String, &Source> = new.iter().map(|s| (s.identity(), s)).collect();
    let mut result = SourcesDiff::default();
    for source in old {
        if !new_by_identity.contains_key(&source.identity()) {
            result.removed.push(source);
        }
    }
    for source in new {
        let identity = source.identity();
        match old_by_identity.get(&identity) {
            None => result.added.push(source),
            Some(previous) => {
                let fields = changed_fields(previous, source);
                if !fields.is_empty() {
                    result.changed.push(Change { identity, fields, old: previous, new: source });
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
