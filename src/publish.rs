//! Publishing a recipe store as a static site: the recipes and bridge index in the store's own
//! layout (so that `swh-bridge fetch --recipes https://…/` reads it as it reads a directory),
//! the sources.json they were captured from, `stats.json`, and an `index.html` for people.
//!
//! Publishing is incremental: a file already in the site with the same bytes is left alone,
//! others are hard-linked from the store where the file system allows (else copied), each
//! through a temporary name and a rename, so a web server never serves half a file. Nothing is
//! deleted: a recipe, once published, may be in use.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::atomic::{self, Existing};
use crate::state::{State, StateError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("failed to read the recipe store {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
}

/// What to publish.
pub struct Publication<'a> {
    pub recipes: &'a Path,
    pub out: &'a Path,
    /// The sources.json to publish beside them, and its revision (for the index page).
    pub sources: Option<(&'a Path, Option<&'a str>)>,
    /// The loader's state, for the statistics.
    pub state: Option<&'a State>,
}

/// What the site holds, as `stats.json` says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SiteStats {
    /// Recipes, counted once each (under their sha256).
    pub recipes: u64,
    /// Bridge index entries by kind of key (`sha256`, `sha512`, `nar-sha256`, `swh-dir`, …).
    pub bridge_keys: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The loader's captures, revisions and save requests by status.
    pub captures: BTreeMap<String, u64>,
    pub revisions: BTreeMap<String, u64>,
    pub saves: BTreeMap<String, u64>,
}

/// What a publication did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    pub written: u64,
    pub unchanged: u64,
    pub stats: SiteStats,
}

/// Publishes the store (see the module docs).
pub fn publish(publication: &Publication) -> Result<PublishReport, PublishError> {
    let mut report = PublishReport::default();
    let read_error = |path: &Path| {
        let path = path.to_owned();
        move |source| PublishError::Read { path, source }
    };
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = publication.recipes.join(&relative);
        let mut entries =
            fs::read_dir(&dir).map_err(read_error(&dir))?.collect::<Result<Vec<_>, _>>().map_err(read_error(&dir))?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let name = entry.file_name();
            // Temporary files of a store being written to.
            if name.to_string_lossy().starts_with(".tmp") {
                continue;
            }
            let path = relative.join(&name);
            let kind = entry.file_type().map_err(read_error(&entry.path()))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                count(&path, &mut report.stats);
                match place(&entry.path(), &publication.out.join(&path))? {
                    true => report.written += 1,
                    false => report.unchanged += 1,
                }
            }
        }
    }
    if let Some((sources, revision)) = publication.sources {
        match place(sources, &publication.out.join("sources.json"))? {
            true => report.written += 1,
            false => report.unchanged += 1,
        }
        report.stats.revision = revision.map(str::to_owned);
    }
    if let Some(state) = publication.state {
        report.stats.captures =
            state.capture_counts()?.into_iter().map(|(status, n)| (status.name().to_owned(), n)).collect();
        report.stats.revisions =
            state.revision_counts()?.into_iter().map(|(status, n)| (status.name().to_owned(), n)).collect();
        for save in state.saves(false)? {
            *report.stats.saves.entry(save.status().name().to_owned()).or_default() += 1;
        }
    }
    let json = serde_json::to_vec_pretty(&report.stats).expect("stats serialise");
    for (name, bytes) in [("stats.json", json), ("index.html", index_page(&report.stats).into_bytes())] {
        match write_new(&publication.out.join(name), &bytes)? {
            true => report.written += 1,
            false => report.unchanged += 1,
        }
    }
    Ok(report)
}

/// Counts a store file by where it is: `sha256/<hex>` is a recipe, `bridge/<kind>/<hex>` an
/// entry's key.
fn count(path: &Path, stats: &mut SiteStats) {
    let parts: Vec<_> = path.iter().map(|p| p.to_string_lossy()).collect();
    match parts.as_slice() {
        [algo, _] if algo == "sha256" => stats.recipes += 1,
        [bridge, kind, _] if bridge == "bridge" => *stats.bridge_keys.entry(kind.to_string()).or_default() += 1,
        _ => {}
    }
}

/// Puts `source` at `dest` unless it is already there with the same bytes; returns whether it
/// wrote.
fn place(source: &Path, dest: &Path) -> Result<bool, PublishError> {
    let read_error = |source_error| PublishError::Read { path: source.to_owned(), source: source_error };
    let from = fs::metadata(source).map_err(read_error)?;
    if let Ok(to) = fs::metadata(dest) {
        let same_file = from.dev() == to.dev() && from.ino() == to.ino();
        if same_file
            || (from.len() == to.len() && fs::read(source).map_err(read_error)? == fs::read(dest).unwrap_or_default())
        {
            return Ok(false);
        }
    }
    atomic::link_or_copy(source, dest).map_err(|source| PublishError::Write { path: dest.to_owned(), source })?;
    Ok(true)
}

/// Writes `bytes` at `dest` unless they are already there; returns whether it wrote.
fn write_new(dest: &Path, bytes: &[u8]) -> Result<bool, PublishError> {
    if fs::read(dest).is_ok_and(|there| there == bytes) {
        return Ok(false);
    }
    atomic::write(dest, bytes, Existing::Replace)
        .map_err(|source| PublishError::Write { path: dest.to_owned(), source })?;
    Ok(true)
}

fn index_page(stats: &SiteStats) -> String {
    let escape = |text: &str| text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let rows = |title: &str, counts: &BTreeMap<String, u64>| -> String {
        counts
            .iter()
            .map(|(key, n)| format!("<tr><td>{}</td><td>{}</td><td>{n}</td></tr>\n", escape(title), escape(key)))
            .collect()
    };
    let mut table = format!("<tr><td>recipes</td><td></td><td>{}</td></tr>\n", stats.recipes);
    table.push_str(&rows("bridge index keys", &stats.bridge_keys));
    table.push_str(&rows("captures", &stats.captures));
    table.push_str(&rows("VCS revisions", &stats.revisions));
    table.push_str(&rows("save requests", &stats.saves));
    let revision = stats.revision.as_deref().map(|r| format!(" for revision {}", escape(r))).unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>swh-bridge recipes</title></head>\n\
         <body>\n<h1>swh-bridge recipes{revision}</h1>\n\
         <p>Recipes rebuild tarballs bit for bit from the trees Software Heritage archives; the bridge index \
         maps Nix hashes to SWHIDs. Use this site with <code>swh-bridge fetch --recipes URL</code>. \
         Also here: <a href=\"sources.json\">sources.json</a>, <a href=\"stats.json\">stats.json</a>.</p>\n\
         <table>\n<tr><th>what</th><th>kind</th><th>count</th></tr>\n{table}</table>\n</body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_twice_writes_only_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, site) = (dir.path().join("store"), dir.path().join("site"));
        fs::create_dir_all(store.join("sha256")).unwrap();
        fs::create_dir_all(store.join("bridge/nar-sha256")).unwrap();
        fs::write(store.join("sha256/aa"), b"recipe").unwrap();
        fs::write(store.join("bridge/nar-sha256/bb"), b"{}").unwrap();
        fs::write(store.join("sha256/.tmpXYZ"), b"half").unwrap();
        let publication = Publication { recipes: &store, out: &site, sources: None, state: None };
        let first = publish(&publication).unwrap();
        assert_eq!((first.written, first.unchanged, first.stats.recipes), (4, 0, 1));
        assert_eq!(first.stats.bridge_keys, BTreeMap::from([("nar-sha256".to_owned(), 1)]));
        assert!(!site.join("sha256/.tmpXYZ").exists());
        // A recipe rewritten in the store (a new file, as the store renames into place).
        fs::remove_file(store.join("sha256/aa")).unwrap();
        fs::write(store.join("sha256/aa"), b"recipe, again").unwrap();
        let second = publish(&publication).unwrap();
        assert_eq!((second.written, second.unchanged), (1, 3));
        assert_eq!(fs::read(site.join("sha256/aa")).unwrap(), b"recipe, again");
        assert!(fs::read_to_string(site.join("index.html")).unwrap().contains("<td>recipes</td><td></td><td>1</td>"));
    }
}
