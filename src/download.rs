//! Reading an HTTP answer's body within bounds: what comes from a server (an upstream, a binary
//! cache, a recipe store) is untrusted, and one that sends forever must not fill the memory or
//! the disk, nor one that trickles a byte at a time hold a run forever (no timeout between bytes
//! ever trips on it).

use std::time::{Duration, Instant};

/// The slowest average pace a body may keep once it has run for its patience.
pub const MIN_RATE: u64 = 1024;
/// How long a body read whole into memory (a narinfo, a NAR, a recipe, a feed) may take before
/// [`MIN_RATE`] applies.
pub const BODY_PATIENCE: Duration = Duration::from_secs(60);

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
    #[error("it is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{received} bytes in {seconds} s, slower than {MIN_RATE} bytes/s")]
    TooSlow { received: u64, seconds: u64 },
}

/// Bounds on one body: its size, and its pace once `patience` has passed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    pub max_bytes: u64,
    pub patience: Duration,
}

impl BodyLimits {
    pub(crate) fn of_size(max_bytes: u64) -> BodyLimits {
        BodyLimits { max_bytes, patience: BODY_PATIENCE }
    }
}

/// Counts a body's bytes as they come and says when it goes past its bounds.
pub(crate) struct Meter {
    limits: BodyLimits,
    started: Instant,
    received: u64,
}

impl Meter {
    /// Starts metering `response`'s body; refused at once if the length it announces is too large.
    pub(crate) fn start(response: &reqwest::Response, limits: BodyLimits) -> Result<Meter, BodyError> {
        if response.content_length().is_some_and(|announced| announced > limits.max_bytes) {
            return Err(BodyError::TooLarge { limit: limits.max_bytes });
        }
        Ok(Meter { limits, started: Instant::now(), received: 0 })
    }

    /// Counts `len` more bytes.
    fn count(&mut self, len: usize) -> Result<(), BodyError> {
        self.received += len as u64;
        if self.received > self.limits.max_bytes {
            return Err(BodyError::TooLarge { limit: self.limits.max_bytes });
        }
        let elapsed = self.started.elapsed();
        if elapsed > self.limits.patience && self.received < MIN_RATE * elapsed.as_secs() {
            return Err(BodyError::TooSlow { received: self.received, seconds: elapsed.as_secs() });
        }
        Ok(())
    }

    /// The next chunk of `response`'s body, counted; `None` at its end. A body that stops
    /// sending altogether is the client's read timeout's to end.
    pub(crate) async fn chunk(&mut self, response: &mut reqwest::Response) -> Result<Option<bytes::Bytes>, BodyError> {
        let chunk = response.chunk().await?;
        if let Some(chunk) = &chunk {
            self.count(chunk.len())?;
        }
        Ok(chunk)
    }
}

/// The body of `response`, refused as soon as it grows past `limits.max_bytes` or falls below
/// [`MIN_RATE`] after `limits.patience`.
pub(crate) async fn read_within(mut response: reqwest::Response, limits: BodyLimits) -> Result<Vec<u8>, BodyError> {
    let mut meter = Meter::start(&response, limits)?;
    let mut bytes = Vec::new();
    while let Some(chunk) = meter.chunk(&mut response).await? {
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
