//! A directory of the archive rebuilt through the API: each directory listed (a request each),
//! then each file downloaded (a request each, [`PARALLEL_DOWNLOADS`] at once). Cheap for small
//! trees; larger ones come from the vault (see [`super::vault`]).
//!
//! Quirks of the listings: a name that is not UTF-8 comes escaped (see
//! [`crate::archive::model::DirectoryEntry::name_bytes`]); a content the archive skipped is
//! listed with a status other than `visible`; a submodule is an entry of type `rev`, which a NAR
//! cannot hold.

use std::sync::Arc;

use super::FetchError;
use crate::archive::model::{ContentStatus, EntryKind};
use crate::archive::{ArchiveClient, ContentKey};
use crate::hashing::Swhid;
use crate::hashing::tree::memory::Node;
use crate::hashing::tree::{Limits, TreeError};

/// Contents downloaded at once while walking a tree.
const PARALLEL_DOWNLOADS: usize = 8;

/// A directory being listed through the API, and then its files downloaded.
pub(super) struct DirectoryWalk {
    root: Swhid,
    tree: Node,
    /// Directories still to list: their path in the tree, and their id.
    pending: Vec<(Vec<u8>, Swhid)>,
    listed: usize,
    files: Vec<PendingFile>,
    /// What the walk may hold; the bytes are checked against the lengths the archive announces,
    /// then against what it sends.
    limits: Limits,
    announced_bytes: u64,
}

struct PendingFile {
    path: Vec<u8>,
    symlink: bool,
    executable: bool,
    content: ContentKey,
}

impl DirectoryWalk {
    pub(super) fn new(root: Swhid, limits: Limits) -> DirectoryWalk {
        DirectoryWalk {
            root,
            tree: Node::empty_directory(),
            pending: vec![(Vec::new(), root)],
            listed: 0,
            files: Vec::new(),
            limits,
            announced_bytes: 0,
        }
    }

    fn limit_exceeded(&self, what: &'static str, limit: u64) -> FetchError {
        self.tree_error(TreeError::LimitExceeded { what, limit })
    }

    /// Directories listed and files found: the requests a walk costs.
    fn objects(&self) -> usize {
        self.listed + self.files.len()
    }

    fn tree_error(&self, source: TreeError) -> FetchError {
        FetchError::Tree { swhid: self.root, source }
    }

    /// Lists directories until none is left (`true`), or until the walk would cost more than
    /// `limit` requests (`false`; it can go on later with a higher limit).
    pub(super) async fn list(&mut self, archive: &ArchiveClient, limit: usize) -> Result<bool, FetchError> {
        while let Some((prefix, id)) = self.pending.pop() {
            if self.objects() >= limit {
                self.pending.push((prefix, id));
                return Ok(false);
            }
            self.listed += 1;
            for entry in archive.directory(&id).await? {
                let Some(name) = entry.name_bytes() else {
                    return Err(self.tree_error(TreeError::HostileMember {
                        path: entry.name,
                        reason: "the archive names it with an escape that is not `\\\\` or `\\xHH`".into(),
                    }));
                };
                let path = if prefix.is_empty() { name } else { [&prefix[..], b"/", &name].concat() };
                if self.objects() as u64 >= self.limits.max_nodes {
                    return Err(self.limit_exceeded("nodes", self.limits.max_nodes));
                }
                if path.iter().filter(|&&b| b == b'/').count() as u64 >= self.limits.max_depth {
                    return Err(self.limit_exceeded("levels of nesting", self.limits.max_depth));
                }
                self.announced_bytes = self.announced_bytes.saturating_add(entry.length.unwrap_or(0));
                if self.announced_bytes > self.limits.max_bytes {
                    return Err(self.limit_exceeded("bytes", self.limits.max_bytes));
                }
                let target = entry.target_swhid().ok_or_else(|| {
                    self.tree_error(TreeError::HostileMember {
                        path: String::from_utf8_lossy(&path).into_owned(),
                        reason: format!("the archive names its target `{}`, which is no object id", entry.target),
                    })
                })?;
                match entry.kind {
                    EntryKind::Dir => {
                        self.tree.insert(&path, Node::empty_directory()).map_err(|e| self.tree_error(e))?;
                        self.pending.push((path, target));
                    }
                    EntryKind::File => {
                        if entry.status.is_some_and(|status| status != ContentStatus::Visible) {
                            return Err(FetchError::Skipped { swhid: target });
                        }
                        self.files.push(PendingFile {
                            path,
                            symlink: entry.perms & 0o170000 == 0o120000,
                            executable: entry.perms & 0o100 != 0,
                            content: ContentKey::of_swhid(&target).expect("a file entry names a content"),
                        });
                    }
                    EntryKind::Rev => {
                        let name = String::from_utf8_lossy(&path).into_owned();
                        return Err(FetchError::Submodule { swhid: self.root, name });
                    }
                }
            }
        }
        Ok(self.objects() <= limit)
    }

    /// Downloads every file found, [`PARALLEL_DOWNLOADS`] at a time, into the tree.
    pub(super) async fn download(mut self, archive: &Arc<ArchiveClient>) -> Result<Node, FetchError> {
        let mut downloads = tokio::task::JoinSet::new();
        let mut contents = Vec::with_capacity(self.files.len());
        let mut received = 0u64;
        let mut queued = self.files.iter().enumerate();
        loop {
            while downloads.len() < PARALLEL_DOWNLOADS {
                let Some((i, file)) = queued.next() else { break };
                let archive = Arc::clone(archive);
                let content = file.content.clone();
                downloads.spawn(async move {
                    let response = archive.content_raw(&content).await?;
                    let bytes = response
                        .bytes()
                        .await
                        .map_err(|source| FetchError::Download { url: format!("content {content}"), source })?;
                    Ok::<_, FetchError>((i, bytes.to_vec()))
                });
            }
            match downloads.join_next().await {
                Some(done) => {
                    let (i, bytes) = done.expect("a download task does not panic")?;
                    received = received.saturating_add(bytes.len() as u64);
                    if received > self.limits.max_bytes {
                        return Err(self.limit_exceeded("bytes", self.limits.max_bytes));
                    }
                    contents.push((i, bytes));
                }
                None => break,
            }
        }
        contents.sort_by_key(|(i, _)| *i);
        for (file, (_, bytes)) in std::mem::take(&mut self.files).into_iter().zip(contents) {
            let node = if file.symlink {
                Node::Symlink { target: bytes }
            } else {
                Node::File { executable: file.executable, contents: bytes }
            };
            self.tree.insert(&file.path, node).map_err(|e| self.tree_error(e))?;
        }
        Ok(self.tree)
    }
}
