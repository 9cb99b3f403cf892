//! Reading an HTTP answer's body whole, within a bound: what comes from a server (an upstream,
//! a binary cache, a recipe store) is untrusted, and one that sends forever must not fill the
//! memory.

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
    #[error("it is larger than {limit} bytes")]
    TooLarge { limit: u64 },
}

/// The body of `response`, refused as soon as it grows past `limit` bytes.
pub(crate) async fn read_within(mut response: reqwest::Response, limit: u64) -> Result<Vec<u8>, BodyError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
    }
    Ok(bytes)
}
