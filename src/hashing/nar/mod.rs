//! NAR, the Nix ARchive format: the byte stream whose hash is a recursive (`outputHashMode =
//! "recursive"`) fixed-output hash, as `nix-store --dump` writes it.
//!
//! Quirks, checked against `nix-store --dump` (Nix 2.8):
//! - every token, keyword or data, is a string: an 8-byte little-endian length, the bytes, then
//!   zero bytes up to a multiple of 8; file contents are one such string;
//! - the stream is `nix-archive-1` then one node:
//!   `( type regular [executable ""] contents <bytes> )`, `( type symlink target <bytes> )` or
//!   `( type directory { entry ( name <bytes> node <node> ) }* )`;
//! - entries are sorted by raw name bytes (not by `/`-suffixed names as git does), and names are
//!   bytes, not necessarily UTF-8;
//! - only the owner's execute bit is recorded; times, owners and other modes are not;
//! - the reader here accepts only the canonical form `nix-store --dump` writes (`executable`
//!   before `contents`, `contents` always present, zero padding, sorted unique names), so that
//!   every NAR it accepts re-serialises to the same bytes, and hence the same hash.

mod read;
mod restore;
mod write;

pub use read::{parse, parse_with_limits};
pub use restore::{Restored, restore};
pub use write::{NarHasher, NarWriter, dump_path, lone_file_framing};

/// The first token of every NAR.
pub(crate) const MAGIC: &[u8] = b"nix-archive-1";

/// Longest name or symlink target accepted (Linux's `PATH_MAX`): anything longer cannot be
/// restored and is treated as hostile.
pub(crate) const MAX_NAME_LEN: u64 = 4096;
