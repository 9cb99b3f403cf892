//! From fixed-output derivations (`.drv` files) to sources.json entries.
//!
//! A derivation's environment holds its attributes as strings (a boolean is `1` or empty, a
//! list its items joined by spaces, a number its digits, a null attribute is left out), and
//! follows each fetcher's habits:
//! - `fetchurl` keeps `mirror://site/path` URLs (its builder expands them at build time), in
//!   `urls`; builtin fetchers and VCS fetchers have a single `url`; vendoring derivations (cargo,
//!   Go, npm dependencies) have neither: they are reported apart, as URL-less outputs;
//! - the hash is read from the output (`r:sha256`, hex), whatever spelling the expression used;
//! - the fetcher is not recorded as such; it shows in its own attributes: `fetchgit` sets
//!   `fetchSubmodules` and `leaveDotGit`, `fetchhg` sets `subrepoClause`, `fetchsvn` sets
//!   `ignoreExternals` (older ones only `SVN_SSH`, as nixpkgs-swh looks for);
//! - `sparseCheckout` is the list joined with newlines (empty when unused).
//!
//! Mirror URLs are expanded the way nixpkgs-swh does: every prefix of the site, joined to the path
//! with exactly one `/`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hashing::{Hash, HashAlgo, HashMode};
use crate::sources::{Source, SourceType};
use crate::store::Derivation;

/// One fixed-output derivation, as its `.drv` file holds it (and as `--save-raw` keeps it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawSource {
    /// The system it was instantiated for (`--system`), if one was named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub store_path: Option<String>,
    pub urls: Option<Vec<String>>,
    pub url: Option<String>,
    pub output_hash: Option<String>,
    pub output_hash_algo: Option<String>,
    pub output_hash_mode: Option<String>,
    pub post_fetch: Option<String>,
    pub rev: Option<Value>,
    pub fetch_submodules: Option<Value>,
    pub sparse_checkout: Option<String>,
    pub leave_dot_git: Option<Value>,
    pub ignore_externals: Option<Value>,
    pub subrepo_clause: Option<String>,
}

impl RawSource {
    /// The record of a fixed-output derivation (`None` for any other derivation).
    pub(crate) fn of_derivation(derivation: &Derivation, system: Option<&str>) -> Option<RawSource> {
        let output = derivation.fixed_output()?;
        let env = |name: &str| derivation.env.get(name).cloned();
        // What a boolean attribute became: `1` or empty; missing when it was null.
        let flag = |name: &str| derivation.env.get(name).map(|value| Value::Bool(value == "1"));
        let (mode, algo) = match output.hash_algo.strip_prefix("r:") {
            Some(algo) => (HashMode::Recursive, algo),
            None => (HashMode::Flat, output.hash_algo.as_str()),
        };
        Some(RawSource {
            system: system.map(str::to_owned),
            store_path: Some(output.path.clone()),
            urls: derivation.env.get("urls").map(|urls| urls.split_whitespace().map(str::to_owned).collect()),
            url: env("url"),
            output_hash: Some(output.hash.clone()),
            output_hash_algo: Some(algo.to_owned()),
            output_hash_mode: Some(mode.name().to_owned()),
            post_fetch: env("postFetch"),
            rev: env("rev").map(Value::String),
            fetch_submodules: flag("fetchSubmodules"),
            sparse_checkout: env("sparseCheckout"),
            leave_dot_git: flag("leaveDotGit"),
            ignore_externals: flag("ignoreExternals").or_else(|| flag("SVN_SSH").map(|_| Value::Bool(false))),
            subrepo_clause: env("subrepoClause"),
        })
    }
}

/// A fixed output with no URL (a vendoring derivation's, say): nothing to download it from but
/// a binary cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UrlLess {
    pub store_path: Option<String>,
    #[serde(rename = "integrity", serialize_with = "serialize_sri")]
    pub hash: Hash,
    pub mode: HashMode,
}

fn serialize_sri<S: serde::Serializer>(hash: &Hash, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hash.to_sri())
}

/// The mirror lists of a revision: site name to URL prefixes.
pub(crate) type Mirrors = BTreeMap<String, Vec<String>>;

/// Why a raw record did not become a source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to describe {}: {reason}", store_path.as_deref().unwrap_or("a source without a store path"))]
pub struct NormaliseError {
    pub store_path: Option<String>,
    pub reason: String,
}

/// What a record describes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Described {
    Source(Box<Source>),
    UrlLess(UrlLess),
}

/// A record described, and what could not be expanded on the way.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Normalised {
    pub described: Described,
    /// `mirror://` URLs naming a site the revision's mirrors.nix does not have: kept as they
    /// are, as nixpkgs-swh keeps them.
    pub unknown_mirrors: Vec<String>,
}

/// Turns a raw record into a source, expanding mirror URLs with `mirrors`.
pub(crate) fn normalise(raw: &RawSource, mirrors: &Mirrors) -> Result<Normalised, NormaliseError> {
    let fail = |reason: String| NormaliseError { store_path: raw.store_path.clone(), reason };
    let output_hash = text(&raw.output_hash).ok_or_else(|| fail("it has no outputHash".into()))?;
    let algo = match text(&raw.output_hash_algo) {
        Some(name) => Some(name.parse::<HashAlgo>().map_err(|e| fail(e.to_string()))?),
        None => None,
    };
    let hash = Hash::parse(output_hash, algo).map_err(|e| fail(e.to_string()))?;
    let mode = text(&raw.output_hash_mode).unwrap_or("flat");
    let mode: HashMode =
        mode.parse().map_err(|_| fail(format!("outputHashMode `{mode}` is neither flat nor recursive")))?;

    let rev = raw.rev.as_ref().and_then(|rev| match rev {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    // The fetcher's own attributes first: a fetchgit with an empty rev is still a git source.
    let is_set = |v: &Option<Value>| v.as_ref().is_some_and(|v| !v.is_null());
    let vcs = is_set(&raw.fetch_submodules)
        || is_set(&raw.leave_dot_git)
        || raw.subrepo_clause.is_some()
        || is_set(&raw.ignore_externals);
    if raw.urls.is_none() && text(&raw.url).is_none() && !vcs {
        let url_less = UrlLess { store_path: raw.store_path.clone(), hash, mode };
        return Ok(Normalised { described: Described::UrlLess(url_less), unknown_mirrors: Vec::new() });
    }
    let kind = if raw.urls.is_some() {
        SourceType::Url
    } else if is_set(&raw.fetch_submodules) || is_set(&raw.leave_dot_git) {
        SourceType::Git
    } else if raw.subrepo_clause.is_some() {
        SourceType::Hg
    } else if is_set(&raw.ignore_externals) {
        SourceType::Svn
    } else if rev.is_none() {
        SourceType::Url
    } else {
        return Err(fail("it has a `url` and a `rev` but no attribute of a known VCS fetcher".into()));
    };

    let mut source = Source::new(kind, &hash, mode);
    source.post_fetch = text(&raw.post_fetch).map(str::to_owned);
    source.nix_store_path = raw.store_path.clone();
    let url = || text(&raw.url).map(str::to_owned).ok_or_else(|| fail("it has no `url`".into()));
    let mut unknown_mirrors = Vec::new();
    match kind {
        SourceType::Url => {
            let listed = match &raw.urls {
                Some(urls) => urls.clone(),
                None => vec![url()?],
            };
            let expanded = expand_mirrors(&listed, mirrors);
            unknown_mirrors = expanded.unknown;
            if expanded.urls.is_empty() {
                return Err(fail("its list of URLs is empty".into()));
            }
            source.urls = Some(expanded.urls);
        }
        SourceType::Git => {
            source.git_url = Some(url()?);
            source.git_ref = rev;
            source.submodule = (raw.fetch_submodules == Some(Value::Bool(true))).then_some(true);
            source.sparse_checkout = text(&raw.sparse_checkout).map(str::to_owned);
        }
        SourceType::Hg => {
            source.hg_url = Some(url()?);
            source.hg_changeset = rev;
        }
        SourceType::Svn => {
            source.svn_url = Some(url()?);
            source.svn_revision = rev.map(|r| r.parse::<u64>().map_or(Value::String(r), |n| Value::Number(n.into())));
        }
    }
    Ok(Normalised { described: Described::Source(Box::new(source)), unknown_mirrors })
}

/// URLs with their mirrors expanded, and the ones whose site is unknown.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Expanded {
    pub urls: Vec<String>,
    pub unknown: Vec<String>,
}

/// The string, unless it is missing or empty.
fn text(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|s| !s.is_empty())
}

/// Expands `mirror://site/path` URLs into one URL per mirror of the site, keeping the order and
/// dropping repeats; a URL whose site is unknown is kept as it is, after the others (SWH's lister
/// takes the first URL as the origin, and skips a `mirror://` one), and named in `unknown`.
pub(crate) fn expand_mirrors(urls: &[String], mirrors: &Mirrors) -> Expanded {
    let mut out = Expanded::default();
    let mut push = |url: String| {
        if !out.urls.contains(&url) {
            out.urls.push(url);
        }
    };
    for url in urls {
        let Some(rest) = url.strip_prefix("mirror://") else {
            push(url.clone());
            continue;
        };
        let (site, path) = rest.split_once('/').unwrap_or((rest, ""));
        match mirrors.get(site) {
            Some(prefixes) => {
                for prefix in prefixes {
                    push(format!("{}/{}", prefix.trim_end_matches('/'), path.trim_start_matches('/')));
                }
            }
            None => out.unknown.push(url.clone()),
        }
    }
    for url in out.unknown.clone() {
        if !out.urls.contains(&url) {
            out.urls.push(url);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(rev: Option<Value>) -> RawSource {
        RawSource {
            store_path: Some("/nix/store/x-source".into()),
            url: Some("svn://example.org/repo".into()),
            output_hash: Some("sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=".into()),
            output_hash_mode: Some("recursive".into()),
            rev,
            ..RawSource::default()
        }
    }

    #[test]
    fn an_unknown_vcs_fetcher_is_named_not_guessed() {
        let err = normalise(&raw(Some(Value::String("abc".into()))), &Mirrors::new()).unwrap_err();
        assert!(err.to_string().contains("/nix/store/x-source: it has a `url` and a `rev`"), "{err}");
    }

    #[test]
    fn svn_revisions_are_numbers_when_they_are_numbers() {
        for (rev, expected) in [(Value::from(12), Value::from(12)), (Value::from("HEAD"), Value::from("HEAD"))] {
            let mut record = raw(Some(rev));
            record.ignore_externals = Some(Value::Bool(false));
            let Described::Source(source) = normalise(&record, &Mirrors::new()).unwrap().described else {
                panic!("an svn source")
            };
            assert_eq!(source.kind, SourceType::Svn);
            assert_eq!(source.svn_revision, Some(expected));
        }
    }

    #[test]
    fn mirrors_expand_with_one_slash_and_unknown_sites_are_kept_as_they_are() {
        let mirrors: Mirrors = [("gnu".to_owned(), vec!["https://a.org/gnu/".to_owned(), "https://b.org".to_owned()])]
            .into_iter()
            .collect();
        let urls = vec!["mirror://gnu/hello/h.tar.gz".to_owned(), "https://a.org/gnu/hello/h.tar.gz".to_owned()];
        assert_eq!(
            expand_mirrors(&urls, &mirrors).urls,
            ["https://a.org/gnu/hello/h.tar.gz", "https://b.org/hello/h.tar.gz"]
        );
        let unknown = vec!["mirror://nope/x".to_owned(), "https://c.org/x".to_owned()];
        assert_eq!(
            expand_mirrors(&unknown, &mirrors),
            Expanded {
                urls: vec!["https://c.org/x".into(), "mirror://nope/x".into()],
                unknown: vec!["mirror://nope/x".into()]
            }
        );
    }
}
