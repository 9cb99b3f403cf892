//! A hasher that runs on its own thread, so that reading a tree and hashing its serialisation
//! overlap: with warm caches, walking and copying cost about as much as SHA-256 itself.

use std::io;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::{Hash, HashAlgo};

const CHUNK: usize = 1 << 20;
/// Chunks in flight: enough to ride over a slow directory listing, few enough to stay in cache.
const IN_FLIGHT: usize = 4;

/// An [`io::Write`] whose bytes are hashed on a worker thread.
pub struct BackgroundHasher {
    buf: Vec<u8>,
    full: Option<SyncSender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    worker: Option<JoinHandle<Hash>>,
}

impl BackgroundHasher {
    pub fn new(algo: HashAlgo) -> BackgroundHasher {
        let (full_tx, full_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
        for _ in 0..IN_FLIGHT {
            empty_tx.send(Vec::with_capacity(CHUNK)).expect("the channel has room for the spares");
        }
        let worker = std::thread::Builder::new()
            .name(format!("{algo}-hasher"))
            .spawn(move || {
                let mut hasher = algo.hasher();
                for mut chunk in full_rx {
                    hasher.update(&chunk);
                    chunk.clear();
                    // The writer may already be gone after its last chunk; the spare is then unneeded.
                    let _ = empty_tx.send(chunk);
                }
                hasher.finish()
            })
            .expect("spawning a hasher thread");
        BackgroundHasher { buf: Vec::with_capacity(CHUNK), full: Some(full_tx), empty: empty_rx, worker: Some(worker) }
    }

    fn ship(&mut self) {
        let spare = self.empty.recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let chunk = std::mem::replace(&mut self.buf, spare);
        self.full
            .as_ref()
            .expect("a hasher is not used after finish")
            .send(chunk)
            .expect("the hasher thread lives until finish");
    }

    /// Hashes what is still buffered and returns the digest of everything written.
    pub fn finish(mut self) -> Hash {
        if !self.buf.is_empty() {
            self.ship();
        }
        drop(self.full.take());
        self.worker.take().expect("finish runs once").join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

impl io::Write for BackgroundHasher {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let written = data.len();
        while !data.is_empty() {
            let room = CHUNK - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == CHUNK {
                self.ship();
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
        drop(self.full.take());
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
    fn matches_a_plain_hasher_across_chunk_boundaries() {
        let data: Vec<u8> = (0..(3 * CHUNK + 12345)).map(|i| (i * 7 % 251) as u8).collect();
        for algo in HashAlgo::ALL {
            let mut background = BackgroundHasher::new(algo);
            for piece in data.chunks(CHUNK / 3 + 1) {
                background.write_all(piece).unwrap();
            }
            let mut plain = algo.hasher();
            plain.update(&data);
            assert_eq!(background.finish(), plain.finish());
        }
    }
}
