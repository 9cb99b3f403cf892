//! A hasher that runs on its own thread, so that walking a tree and hashing its serialisation
//! overlap.
//!
//! Why it reads large files itself: SHA-256 runs about a third faster on bytes that are already
//! in its own core's cache than on bytes another core has just written. So the walking thread
//! hands over open files and only copies small pieces (NAR framing, small files) into chunks;
//! the hashing thread reads each large file into one small buffer and hashes it while it is hot.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::tree::TreeError;
use super::tree::disk::read_exactly_at;
use super::{Hash, HashAlgo, Hasher};

const CHUNK: usize = 256 * 1024;
/// Jobs queued ahead of the hasher: lets the walk run ahead through a stretch of large files
/// (which cost it nothing) to get through the next stretch of small ones while the hasher
/// catches up. Each queued file holds a descriptor, so this also bounds the open files.
const QUEUED: usize = 128;
/// Spare chunk buffers; few, because little is ever copied.
const SPARES: usize = 8;

enum Job {
    Bytes(Vec<u8>),
    File { file: Arc<File>, path: PathBuf, size: u64 },
}

/// An [`io::Write`] whose bytes, and whole files handed to [`BackgroundHasher::hash_file`], are
/// hashed in order on a worker thread.
pub(crate) struct BackgroundHasher {
    buf: Vec<u8>,
    /// Set when the hasher is dropped unfinished (the walk failed), so that the worker stops
    /// instead of hashing the large files still queued.
    cancelled: Arc<AtomicBool>,
    jobs: Option<SyncSender<Job>>,
    spares: Receiver<Vec<u8>>,
    worker: Option<JoinHandle<Result<Hash, TreeError>>>,
}

impl BackgroundHasher {
    pub(crate) fn new(algo: HashAlgo) -> Result<BackgroundHasher, TreeError> {
        let (jobs_tx, jobs_rx) = sync_channel::<Job>(QUEUED);
        let (spares_tx, spares_rx) = sync_channel::<Vec<u8>>(SPARES + 1);
        for _ in 0..SPARES {
            spares_tx.send(Vec::with_capacity(CHUNK)).expect("the channel has room for the spares");
        }
        let cancelled = Arc::new(AtomicBool::new(false));
        let worker_cancelled = Arc::clone(&cancelled);
        let worker = std::thread::Builder::new()
            .name(format!("{algo}-hasher"))
            .spawn(move || run_jobs(algo.hasher(), jobs_rx, spares_tx, &worker_cancelled))
            .map_err(TreeError::Thread)?;
        Ok(BackgroundHasher {
            buf: Vec::with_capacity(CHUNK),
            cancelled,
            jobs: Some(jobs_tx),
            spares: spares_rx,
            worker: Some(worker),
        })
    }

    fn send(&mut self, job: Job) {
        // A send fails only once the worker has stopped on an error, which finish() reports.
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    fn ship_buffer(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let spare = self.spares.recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let chunk = std::mem::replace(&mut self.buf, spare);
        self.send(Job::Bytes(chunk));
    }

    /// Hashes exactly `size` bytes of `file`, from its start, next in the stream. A file that is
    /// shorter or longer makes [`BackgroundHasher::finish`] fail.
    pub(crate) fn hash_file(&mut self, file: Arc<File>, path: PathBuf, size: u64) {
        self.ship_buffer();
        self.send(Job::File { file, path, size });
    }

    /// Hashes what is still buffered and returns the digest of everything written.
    pub(crate) fn finish(mut self) -> Result<Hash, TreeError> {
        self.ship_buffer();
        drop(self.jobs.take());
        self.worker.take().expect("finish runs once").join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

fn run_jobs(
    mut hasher: Hasher,
    jobs: Receiver<Job>,
    spares: SyncSender<Vec<u8>>,
    cancelled: &AtomicBool,
) -> Result<Hash, TreeError> {
    let mut buf = vec![0u8; CHUNK];
    for job in jobs {
        if cancelled.load(Ordering::Relaxed) {
            return Err(TreeError::Cancelled);
        }
        match job {
            Job::Bytes(mut chunk) => {
                hasher.update(&chunk);
                chunk.clear();
                // The writer may be gone after its last chunk; the spare is then unneeded.
                let _ = spares.send(chunk);
            }
            Job::File { file, path, size } => read_exactly_at(&file, &path, size, &mut buf, |chunk| {
                if cancelled.load(Ordering::Relaxed) {
                    return Err(TreeError::Cancelled);
                }
                hasher.update(chunk);
                Ok(())
            })?,
        }
    }
    Ok(hasher.finish())
}

impl io::Write for BackgroundHasher {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let written = data.len();
        while !data.is_empty() {
            let take = (CHUNK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == CHUNK {
                self.ship_buffer();
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for BackgroundHasher {
    fn drop(&mut self) {
        // After finish() there is no worker left; otherwise the result is unwanted.
        self.cancelled.store(true, Ordering::Relaxed);
        drop(self.jobs.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn matches_a_plain_hasher_across_chunks_and_files() {
        let data: Vec<u8> = (0..(3 * CHUNK + 12345)).map(|i| (i * 7 % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        for algo in HashAlgo::ALL {
            let mut background = BackgroundHasher::new(algo).unwrap();
            for piece in data.chunks(CHUNK / 3 + 1) {
                background.write_all(piece).unwrap();
            }
            background.hash_file(file.clone(), path.clone(), data.len() as u64);
            background.write_all(b"tail").unwrap();
            let mut plain = algo.hasher();
            plain.update(&data);
            plain.update(&data);
            plain.update(b"tail");
            assert_eq!(background.finish().unwrap(), plain.finish());
        }
    }

    #[test]
    fn a_file_of_another_size_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        for announced in [4, 6] {
            let mut background = BackgroundHasher::new(HashAlgo::Sha256).unwrap();
            background.hash_file(file.clone(), path.clone(), announced);
            let err = background.finish().unwrap_err().to_string();
            assert!(err.contains(&format!("expected {announced} bytes, found 5")), "{err}");
        }
    }
}
