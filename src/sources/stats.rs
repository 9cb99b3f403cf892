//! The numbers nixpkgs-swh's published README shows for a sources.json: sources by type, hash
//! mode and algorithm, and, for url sources, by host, scheme and file type.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Clipped, ReadSources, Source, SourceType};

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub sources: usize,
    pub without_origin: usize,
    pub by_type: BTreeMap<String, usize>,
    pub by_hash_mode: BTreeMap<String, usize>,
    pub by_hash_algo: BTreeMap<String, usize>,
    /// url sources only, by their first URL.
    pub hosts: usize,
    pub top_hosts: Vec<(String, usize)>,
    pub by_scheme: BTreeMap<String, usize>,
    pub by_file_type: BTreeMap<String, usize>,
}

/// How many hosts `top_hosts` lists.
pub(crate) const TOP_HOSTS: usize = 40;

/// File types by the URL's ending, longest first.
const FILE_TYPES: &[(&str, &str)] = &[
    (".tar.gz", "archive"),
    (".tar.xz", "archive"),
    (".tar.bz2", "archive"),
    (".tar.zst", "archive"),
    (".tar.lz", "archive"),
    (".tar.lzma", "archive"),
    (".tar.z", "archive"),
    (".tgz", "archive"),
    (".txz", "archive"),
    (".tbz2", "archive"),
    (".tbz", "archive"),
    (".tar", "archive"),
    (".zip", "archive"),
    (".7z", "archive"),
    (".crate", "crate"),
    (".gem", "gem"),
    (".jar", "jar"),
    (".whl", "wheel"),
    (".patch", "patch"),
    (".diff", "diff"),
    (".gz", "compressed file"),
    (".xz", "compressed file"),
    (".bz2", "compressed file"),
];

/// What a url source's first URL says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlFacets {
    /// `invalid` for a URL that does not parse.
    pub scheme: String,
    pub host: String,
    /// `archive`, `crate`, `wheel`, `patch`, …, `other` (see `FILE_TYPES`).
    pub file_type: &'static str,
}

impl UrlFacets {
    /// The facets of a url source's first URL; `None` for VCS sources and sources without URLs.
    pub(crate) fn of(source: &Source) -> Option<UrlFacets> {
        if source.kind != SourceType::Url {
            return None;
        }
        let first = source.primary_url()?;
        let (scheme, host, path) = match url::Url::parse(first) {
            // Clipped: they become map keys of reports, and an entry can hold megabytes.
            Ok(url) => (
                Clipped(url.scheme()).to_string(),
                Clipped(url.host_str().unwrap_or("")).to_string(),
                url.path().to_owned(),
            ),
            Err(_) => ("invalid".to_owned(), String::new(), first.to_owned()),
        };
        let lower = path.to_ascii_lowercase();
        let file_type = FILE_TYPES.iter().find(|(ending, _)| lower.ends_with(ending)).map_or("other", |(_, t)| t);
        Some(UrlFacets { scheme, host, file_type })
    }
}

pub fn stats(read: &ReadSources) -> Stats {
    stats_of(&read.file.sources, read.without_origin.len())
}

/// The counts for `sources`, plus a number of entries without an origin.
pub fn stats_of(sources: &[Source], without_origin: usize) -> Stats {
    let mut stats = Stats { without_origin, ..kinds_of(sources) };
    let mut hosts: BTreeMap<String, usize> = BTreeMap::new();
    for facets in sources.iter().filter_map(UrlFacets::of) {
        *stats.by_scheme.entry(facets.scheme).or_default() += 1;
        *hosts.entry(facets.host).or_default() += 1;
        *stats.by_file_type.entry(facets.file_type.to_owned()).or_default() += 1;
    }
    stats.hosts = hosts.len();
    let mut ranked: Vec<(String, usize)> = hosts.into_iter().collect();
    ranked.sort_by(|(a, x), (b, y)| y.cmp(x).then(a.cmp(b)));
    ranked.truncate(TOP_HOSTS);
    stats.top_hosts = ranked;
    stats
}

/// The counts by type, hash mode and hash algorithm alone, which need no URL parsed.
pub fn kinds_of(sources: &[Source]) -> Stats {
    let mut stats = Stats { sources: sources.len(), ..Stats::default() };
    for source in sources {
        *stats.by_type.entry(source.kind.name().to_owned()).or_default() += 1;
        let mode = Clipped(source.output_hash_mode.as_deref().unwrap_or("unknown")).to_string();
        *stats.by_hash_mode.entry(mode).or_default() += 1;
        let algo = source
            .integrity
            .as_deref()
            .and_then(|i| i.split_once('-').map(|(a, _)| a))
            .or(source.output_hash_algo.as_deref())
            .map_or_else(|| "none".to_owned(), |algo| Clipped(algo).to_string());
        *stats.by_hash_algo.entry(algo).or_default() += 1;
    }
    stats
}
