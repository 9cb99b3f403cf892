//! Checking a sources.json entry by entry, reporting every problem with its index and field
//! rather than stopping at the first.

use serde_json::{Map, Value};

use super::EntryProblem;
use crate::hashing::{Hash, HashAlgo};

/// Every field nixpkgs-swh or Guix writes.
const KNOWN_FIELDS: &[&str] = &[
    "type",
    "urls",
    "integrity",
    "outputHash",
    "outputHashAlgo",
    "outputHashMode",
    "postFetch",
    "submodule",
    "sparseCheckout",
    "git_url",
    "git_ref",
    "hg_url",
    "hg_changeset",
    "svn_url",
    "svn_revision",
    "svn_files",
    "nixStorePath",
    "narinfo",
    "last_modified",
    "name",
    "inferredFetcher",
];

/// What is wrong with a sources.json document: problems with the file as a whole
/// (`index` = `None`) and with each entry.
#[derive(Debug, Default)]
pub struct Report {
    pub entries: usize,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    File(String),
    Entry(EntryProblem),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::File(message) => f.write_str(message),
            Problem::Entry(problem) => problem.fmt(f),
        }
    }
}

/// Parses and checks a whole document; fails only if it is not JSON. Bytes that are not UTF-8
/// are a problem of the entries that hold them.
pub fn validate_bytes(bytes: &[u8]) -> Result<Report, serde_json::Error> {
    let (document, not_utf8) = super::parse(bytes)?;
    Ok(validate(&document, not_utf8))
}

/// Checks a whole document (read lossily if `not_utf8`).
fn validate(document: &Value, not_utf8: bool) -> Report {
    let mut report = Report::default();
    let Some(top) = document.as_object() else {
        report.problems.push(Problem::File("the top level is not a JSON object".into()));
        return report;
    };
    match top.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
        Some(Value::String(s)) if s == "1" => {}
        Some(other) => report.problems.push(Problem::File(format!("version: expected 1, found {other}"))),
        None => report.problems.push(Problem::File("version: missing".into())),
    }
    let Some(sources) = top.get("sources") else {
        report.problems.push(Problem::File("sources: missing".into()));
        return report;
    };
    let Some(entries) = sources.as_array() else {
        report.problems.push(Problem::File("sources: not a list".into()));
        return report;
    };
    report.entries = entries.len();
    for (index, entry) in entries.iter().enumerate() {
        if not_utf8 && super::holds_replacement(entry) {
            let message = super::NOT_UTF8.to_owned();
            report.problems.push(Problem::Entry(EntryProblem { index, field: None, message }));
            continue;
        }
        check_entry(entry, &mut |field: Option<&str>, message: String| {
            report.problems.push(Problem::Entry(EntryProblem { index, field: field.map(str::to_owned), message }))
        });
    }
    report
}

fn check_entry(entry: &Value, report: &mut dyn FnMut(Option<&str>, String)) {
    let Some(entry) = entry.as_object() else {
        report(None, format!("expected an object, found {}", kind_of(entry)));
        return;
    };
    for field in entry.keys().filter(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
        report(Some(field), "unknown field".into());
    }
    let kind = match entry.get("type") {
        None => {
            report(Some("type"), "missing".into());
            None
        }
        // Guix: a package without a source, or a fetch method it cannot describe.
        Some(Value::Bool(false)) => return,
        Some(Value::String(t)) if t == "no-origin" => return,
        Some(Value::String(t)) if ["url", "git", "hg", "svn"].contains(&t.as_str()) => Some(t.as_str()),
        Some(other) => {
            report(Some("type"), format!("expected url, git, hg or svn, found {other}"));
            None
        }
    };

    let algo = match string(entry, "outputHashAlgo", report) {
        Some(name) => match name.parse::<HashAlgo>() {
            Ok(algo) => Some(algo),
            Err(err) => {
                report(Some("outputHashAlgo"), err.to_string());
                None
            }
        },
        None => None,
    };
    match string(entry, "integrity", report) {
        Some(integrity) if !integrity.contains('-') => {
            report(Some("integrity"), format!("`{integrity}` is not SRI (algorithm-base64)"));
        }
        Some(integrity) => {
            if let Err(err) = Hash::parse(integrity, algo) {
                report(Some("integrity"), err.to_string());
            }
        }
        None if kind == Some("url") && !entry.contains_key("outputHash") => {
            report(Some("integrity"), "missing: a url source needs a hash".into());
        }
        None => {}
    }
    if let Some(mode) = string(entry, "outputHashMode", report) {
        if mode != "flat" && mode != "recursive" {
            report(Some("outputHashMode"), format!("expected flat or recursive, found `{mode}`"));
        }
    }
    for field in ["postFetch", "sparseCheckout", "nixStorePath", "narinfo", "last_modified", "name"] {
        string(entry, field, report);
    }
    if let Some(value) = entry.get("submodule") {
        if !value.is_boolean() {
            report(Some("submodule"), format!("expected a boolean, found {}", kind_of(value)));
        }
    }

    match kind {
        Some("url") => match entry.get("urls") {
            None => report(Some("urls"), "missing: a url source needs at least one URL".into()),
            Some(Value::Array(urls)) if urls.is_empty() => report(Some("urls"), "empty".into()),
            Some(Value::Array(urls)) => {
                for (i, url) in urls.iter().enumerate() {
                    let field = format!("urls[{i}]");
                    match url.as_str() {
                        None => report(Some(&field), format!("expected a string, found {}", kind_of(url))),
                        Some(text) => {
                            if let Err(err) = url::Url::parse(text) {
                                report(Some(&field), format!("`{text}` is not a URL: {err}"));
                            }
                        }
                    }
                }
            }
            Some(other) => report(Some("urls"), format!("expected a list, found {}", kind_of(other))),
        },
        Some(vcs) => {
            let url_field = format!("{vcs}_url");
            match string(entry, &url_field, report) {
                None => report(Some(&url_field), format!("missing: a {vcs} source needs its repository URL")),
                Some(text) => {
                    if url::Url::parse(text).is_err() {
                        report(Some(&url_field), format!("`{text}` is not a URL"));
                    }
                }
            }
            match vcs {
                "git" => drop(string(entry, "git_ref", report)),
                "hg" => drop(string(entry, "hg_changeset", report)),
                _ => match entry.get("svn_revision") {
                    None | Some(Value::Number(_)) | Some(Value::String(_)) => {}
                    Some(other) => {
                        report(Some("svn_revision"), format!("expected a number or a string, found {}", kind_of(other)))
                    }
                },
            }
        }
        None => {}
    }
}

/// The string at `field`, reporting a value of another type.
fn string<'a>(
    entry: &'a Map<String, Value>,
    field: &str,
    report: &mut dyn FnMut(Option<&str>, String),
) -> Option<&'a str> {
    match entry.get(field)? {
        Value::String(s) => Some(s),
        Value::Null => None,
        other => {
            report(Some(field), format!("expected a string, found {}", kind_of(other)));
            None
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
