//! Computes SWHIDs from tree events: the root's id (`dir`, or `cnt` for a lone file or symlink)
//! and, on request, every file's and symlink's content id with its path.

use super::swhid::{BlobHasher, GitMode, Swhid, directory_id};
use super::tree::{TreeError, TreeSink};

/// A file or symlink met in the tree, with its content id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentEntry {
    /// Path below the root, components joined with `/`, raw bytes.
    pub path: Vec<u8>,
    pub mode: GitMode,
    pub swhid: Swhid,
}

type GitEntry = (Vec<u8>, GitMode, [u8; 20]);

/// A [`TreeSink`] that hashes the tree the way git (and SWH) do.
#[derive(Default)]
pub struct SwhidHasher {
    /// Entries collected so far for every open directory, innermost last.
    open: Vec<Vec<GitEntry>>,
    /// Names of the entries being walked, innermost last.
    names: Vec<Vec<u8>>,
    blob: Option<(BlobHasher, GitMode)>,
    root: Option<Swhid>,
    contents: Option<Vec<ContentEntry>>,
}

impl SwhidHasher {
    pub fn new() -> SwhidHasher {
        SwhidHasher::default()
    }

    /// Also records every file's and symlink's content id.
    pub fn recording_contents() -> SwhidHasher {
        SwhidHasher { contents: Some(Vec::new()), ..SwhidHasher::default() }
    }

    /// The root's SWHID, once the tree is complete.
    pub fn root(&self) -> Option<Swhid> {
        self.root
    }

    /// The root's SWHID and the recorded contents (empty unless recording).
    pub fn finish(self) -> Option<(Swhid, Vec<ContentEntry>)> {
        Some((self.root?, self.contents.unwrap_or_default()))
    }

    fn node_done(&mut self, mode: GitMode, swhid: Swhid) {
        if let (Some(contents), true) = (self.contents.as_mut(), mode != GitMode::Directory) {
            contents.push(ContentEntry { path: self.names.join(&b'/'), mode, swhid });
        }
        match (self.open.last_mut(), self.names.last()) {
            (Some(entries), Some(name)) => entries.push((name.clone(), mode, swhid.id)),
            _ => self.root = Some(swhid),
        }
    }
}

impl TreeSink for SwhidHasher {
    fn file_start(&mut self, executable: bool, size: u64) -> Result<(), TreeError> {
        let mode = if executable { GitMode::Executable } else { GitMode::File };
        self.blob = Some((BlobHasher::new(size), mode));
        Ok(())
    }

    fn file_data(&mut self, data: &[u8]) -> Result<(), TreeError> {
        self.blob.as_mut().expect("file_data comes between file_start and file_end").0.update(data);
        Ok(())
    }

    fn file_end(&mut self) -> Result<(), TreeError> {
        let (blob, mode) = self.blob.take().expect("file_end follows file_start");
        // Every source checks sizes before it emits file_end.
        let swhid = blob.finish().expect("a file's bytes add up to its announced size");
        self.node_done(mode, swhid);
        Ok(())
    }

    fn symlink(&mut self, target: &[u8]) -> Result<(), TreeError> {
        self.node_done(GitMode::Symlink, super::swhid::content_id(target));
        Ok(())
    }

    fn directory_start(&mut self) -> Result<(), TreeError> {
        self.open.push(Vec::new());
        Ok(())
    }

    fn entry_start(&mut self, name: &[u8]) -> Result<(), TreeError> {
        self.names.push(name.to_vec());
        Ok(())
    }

    fn entry_end(&mut self) -> Result<(), TreeError> {
        self.names.pop();
        Ok(())
    }

    fn directory_end(&mut self) -> Result<(), TreeError> {
        let mut entries = self.open.pop().expect("directory_end follows directory_start");
        let swhid = directory_id(&mut entries);
        self.node_done(GitMode::Directory, swhid);
        Ok(())
    }
}
