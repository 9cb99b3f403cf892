//! Computes SWHIDs from tree events: the root's id (`dir`, or `cnt` for a lone file or symlink)
//! and, on request, every file's and symlink's content id with its path.
//!
//! With a worker ([`SwhidHasher::with_worker`]), large files are taken by handle and hashed on a
//! thread of their own; a directory whose entries are not all hashed yet is kept aside and
//! finished at the end, so that the walk never waits for the worker.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError, channel, sync_channel};
use std::thread::JoinHandle;

use super::swhid::{BlobHasher, GitMode, ObjectType, Swhid, directory_id};
use super::tree::disk::read_exactly_at;
use super::tree::{TreeError, TreeSink};

/// A file or symlink met in the tree, with its content id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentEntry {
    /// Path below the root, components joined with `/`, raw bytes.
    pub path: Vec<u8>,
    pub mode: GitMode,
    pub swhid: Swhid,
}

/// An object id, known now or later.
enum Id {
    Ready([u8; 20]),
    /// The worker's `n`th blob, in the order files were handed over.
    Blob(usize),
    /// A directory with an entry that is not hashed yet.
    Directory(Vec<Entry>),
}

struct Entry {
    name: Vec<u8>,
    mode: GitMode,
    id: Id,
}

/// Hashes handed-over files on its own thread, in order.
struct BlobWorker {
    jobs: Option<SyncSender<(Arc<File>, PathBuf, u64)>>,
    results: Receiver<Result<[u8; 20], TreeError>>,
    thread: Option<JoinHandle<()>>,
    /// Set when the hasher is dropped, so that the worker stops rather than hashing what is queued.
    cancelled: Arc<AtomicBool>,
    handed_over: usize,
    /// Results received so far, by hand-over order.
    done: Vec<[u8; 20]>,
    /// Set once a result was an error: the order of later results is then meaningless.
    failed: bool,
}

/// Files queued ahead of the worker; each holds a descriptor.
const QUEUED: usize = 128;

impl BlobWorker {
    fn start() -> Result<BlobWorker, TreeError> {
        let (jobs_tx, jobs_rx) = sync_channel::<(Arc<File>, PathBuf, u64)>(QUEUED);
        let (results_tx, results_rx) = channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        let worker_cancelled = Arc::clone(&cancelled);
        let thread = std::thread::Builder::new()
            .name("blob-hasher".into())
            .spawn(move || hash_blobs(jobs_rx, results_tx, &worker_cancelled))
            .map_err(TreeError::Thread)?;
        Ok(BlobWorker {
            jobs: Some(jobs_tx),
            results: results_rx,
            thread: Some(thread),
            cancelled,
            handed_over: 0,
            done: Vec::new(),
            failed: false,
        })
    }

    fn hand_over(&mut self, file: &Arc<File>, path: &Path, size: u64) -> usize {
        if let Some(jobs) = &self.jobs {
            // A send fails only if the worker is gone, which get() then reports.
            let _ = jobs.send((Arc::clone(file), path.to_owned(), size));
        }
        self.handed_over += 1;
        self.handed_over - 1
    }

    /// The id of blob `n`, if it is hashed already (`wait` false) or once it is (`wait` true).
    fn get(&mut self, n: usize, wait: bool) -> Result<Option<[u8; 20]>, TreeError> {
        if self.failed {
            return Err(TreeError::Cancelled);
        }
        while self.done.len() <= n {
            let received = if wait {
                self.results.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                self.results.try_recv()
            };
            match received {
                Ok(Ok(id)) => self.done.push(id),
                Ok(Err(err)) => {
                    self.failed = true;
                    return Err(err);
                }
                Err(TryRecvError::Empty) => return Ok(None),
                // The worker only stops early by panicking: pass the panic on.
                Err(TryRecvError::Disconnected) => match self.thread.take().map(JoinHandle::join) {
                    Some(Err(panic)) => std::panic::resume_unwind(panic),
                    _ => unreachable!("the blob worker answers every file it was given before it ends"),
                },
            }
        }
        Ok(Some(self.done[n]))
    }
}

impl Drop for BlobWorker {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn hash_blobs(
    jobs: Receiver<(Arc<File>, PathBuf, u64)>,
    results: Sender<Result<[u8; 20], TreeError>>,
    cancelled: &AtomicBool,
) {
    let mut buf = vec![0u8; 256 * 1024];
    for (file, path, size) in jobs {
        if cancelled.load(Ordering::Relaxed) {
            return;
        }
        if results.send(hash_blob(&file, &path, size, &mut buf)).is_err() {
            return;
        }
    }
}

fn hash_blob(file: &File, path: &Path, size: u64, buf: &mut [u8]) -> Result<[u8; 20], TreeError> {
    let mut blob = BlobHasher::new(size);
    read_exactly_at(file, path, size, buf, |chunk| {
        blob.update(chunk);
        Ok(())
    })?;
    Ok(blob.finish().expect("exactly the announced size was read").id)
}

/// A [`TreeSink`] that hashes the tree the way git (and SWH) do.
#[derive(Default)]
pub struct SwhidHasher {
    /// Entries collected so far for every open directory, innermost last.
    open: Vec<Vec<Entry>>,
    /// Names of the entries being walked, innermost last.
    names: Vec<Vec<u8>>,
    file: Option<OpenFile>,
    root: Option<(GitMode, Id)>,
    contents: Option<Vec<(Vec<u8>, GitMode, Id)>>,
    worker: Option<BlobWorker>,
}

/// The file between `file_start` and `file_end`.
enum OpenFile {
    Hashing(BlobHasher, GitMode),
    /// The worker reads it itself; its id will be the worker's `n`th.
    HandedOver(GitMode, usize),
}

impl OpenFile {
    fn mode(&self) -> GitMode {
        match self {
            OpenFile::Hashing(_, mode) | OpenFile::HandedOver(mode, _) => *mode,
        }
    }
}

impl SwhidHasher {
    pub fn new() -> SwhidHasher {
        SwhidHasher::default()
    }

    /// Also records every file's and symlink's content id.
    pub(crate) fn recording_contents(mut self) -> SwhidHasher {
        self.contents = Some(Vec::new());
        self
    }

    /// Takes large files by handle and hashes them on a thread of its own.
    pub(crate) fn with_worker(mut self) -> Result<SwhidHasher, TreeError> {
        self.worker = Some(BlobWorker::start()?);
        Ok(self)
    }

    /// The root's SWHID and the recorded contents (empty unless recording), once the tree is
    /// complete.
    pub fn finish(mut self) -> Result<(Swhid, Vec<ContentEntry>), TreeError> {
        let (mode, id) = self.root.take().ok_or(TreeError::Incomplete)?;
        let object_type = if mode == GitMode::Directory { ObjectType::Directory } else { ObjectType::Content };
        let root = Swhid::new(object_type, self.resolve(id)?);
        let mut contents = Vec::new();
        for (path, mode, id) in self.contents.take().unwrap_or_default() {
            contents.push(ContentEntry { path, mode, swhid: Swhid::new(ObjectType::Content, self.resolve(id)?) });
        }
        Ok((root, contents))
    }

    /// Waits for whatever `id` still needs.
    fn resolve(&mut self, id: Id) -> Result<[u8; 20], TreeError> {
        match id {
            Id::Ready(id) => Ok(id),
            Id::Blob(n) => Ok(self.worker().get(n, true)?.expect("a waited-for blob is hashed")),
            Id::Directory(entries) => {
                let mut resolved = Vec::with_capacity(entries.len());
                for entry in entries {
                    resolved.push((entry.name, entry.mode, self.resolve(entry.id)?));
                }
                Ok(directory_id(&mut resolved).id)
            }
        }
    }

    fn worker(&mut self) -> &mut BlobWorker {
        self.worker.as_mut().expect("only a hasher with a worker hands blobs over")
    }

    /// The directory's id if every entry is hashed by now; the entries again otherwise.
    fn try_directory_id(&mut self, mut entries: Vec<Entry>) -> Result<Id, TreeError> {
        for entry in &mut entries {
            match entry.id {
                Id::Ready(_) => {}
                Id::Blob(n) => match self.worker().get(n, false)? {
                    Some(id) => entry.id = Id::Ready(id),
                    None => return Ok(Id::Directory(entries)),
                },
                Id::Directory(_) => return Ok(Id::Directory(entries)),
            }
        }
        let mut ready: Vec<(Vec<u8>, GitMode, [u8; 20])> = entries
            .into_iter()
            .map(|e| match e.id {
                Id::Ready(id) => (e.name, e.mode, id),
                _ => unreachable!("every entry was checked to be ready"),
            })
            .collect();
        Ok(Id::Ready(directory_id(&mut ready).id))
    }

    fn node_done(&mut self, mode: GitMode, id: Id) {
        if let Some(contents) = self.contents.as_mut() {
            match id {
                Id::Ready(ready) if mode != GitMode::Directory => {
                    contents.push((self.names.join(&b'/'), mode, Id::Ready(ready)));
                }
                Id::Blob(n) => contents.push((self.names.join(&b'/'), mode, Id::Blob(n))),
                _ => {}
            }
        }
        match (self.open.last_mut(), self.names.last()) {
            (Some(entries), Some(name)) => entries.push(Entry { name: name.clone(), mode, id }),
            _ => self.root = Some((mode, id)),
        }
    }
}

impl TreeSink for SwhidHasher {
    fn file_start(&mut self, executable: bool, size: u64) -> Result<(), TreeError> {
        let mode = if executable { GitMode::Executable } else { GitMode::File };
        self.file = Some(OpenFile::Hashing(BlobHasher::new(size), mode));
        Ok(())
    }

    fn file_handle(&mut self, file: &Arc<File>, path: &Path, size: u64) -> Result<bool, TreeError> {
        let Some(worker) = self.worker.as_mut() else { return Ok(false) };
        let n = worker.hand_over(file, path, size);
        let mode = self.file.take().expect("file_handle follows file_start").mode();
        self.file = Some(OpenFile::HandedOver(mode, n));
        Ok(true)
    }

    fn file_data(&mut self, data: &[u8]) -> Result<(), TreeError> {
        match self.file.as_mut().expect("file_data comes between file_start and file_end") {
            OpenFile::Hashing(blob, _) => blob.update(data),
            OpenFile::HandedOver(..) => unreachable!("a handed-over file's bytes are not fed"),
        }
        Ok(())
    }

    fn file_end(&mut self) -> Result<(), TreeError> {
        let id = match self.file.take().expect("file_end follows file_start") {
            // Every source checks sizes before it emits file_end.
            OpenFile::Hashing(blob, mode) => {
                (mode, Id::Ready(blob.finish().expect("a file's bytes add up to its announced size").id))
            }
            OpenFile::HandedOver(mode, n) => (mode, Id::Blob(n)),
        };
        self.node_done(id.0, id.1);
        Ok(())
    }

    fn symlink(&mut self, target: &[u8]) -> Result<(), TreeError> {
        self.node_done(GitMode::Symlink, Id::Ready(super::swhid::content_id(target).id));
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
        let entries = self.open.pop().expect("directory_end follows directory_start");
        let id = self.try_directory_id(entries)?;
        self.node_done(GitMode::Directory, id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handed_over_file_of_another_size_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        for announced in [4, 6] {
            let mut hasher = SwhidHasher::new().with_worker().unwrap();
            hasher.file_start(false, announced).unwrap();
            assert!(hasher.file_handle(&file, &path, announced).unwrap());
            hasher.file_end().unwrap();
            let err = hasher.finish().unwrap_err().to_string();
            assert!(err.contains("changed while being read"), "{err}");
        }
    }

    #[test]
    fn handed_over_files_give_the_ids_of_streamed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data = vec![7u8; 300_000];
        std::fs::write(&path, &data).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let feed = |hasher: &mut SwhidHasher, hand_over: bool| {
            hasher.directory_start().unwrap();
            for name in [&b"a"[..], b"b"] {
                hasher.entry_start(name).unwrap();
                hasher.file_start(true, data.len() as u64).unwrap();
                if !(hand_over && hasher.file_handle(&file, &path, data.len() as u64).unwrap()) {
                    hasher.file_data(&data).unwrap();
                }
                hasher.file_end().unwrap();
                hasher.entry_end().unwrap();
            }
            hasher.directory_end().unwrap();
        };
        let mut streamed = SwhidHasher::new().recording_contents();
        feed(&mut streamed, false);
        let mut handed = SwhidHasher::new().recording_contents().with_worker().unwrap();
        feed(&mut handed, true);
        let (streamed, handed) = (streamed.finish().unwrap(), handed.finish().unwrap());
        assert_eq!(streamed, handed);
        assert_eq!(streamed.1.len(), 2);
        assert_eq!(streamed.1[0].swhid, super::super::swhid::content_id(&data));
    }
}
