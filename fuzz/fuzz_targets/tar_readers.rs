//! Tar streams are untrusted: reading one into memory, replaying it as tree events, and making a
//! recipe of it must fail cleanly on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swh_bridge::hashing::HashAlgo;
use swh_bridge::hashing::nar::NarHasher;
use swh_bridge::hashing::tree::memory::Node;
use swh_bridge::hashing::tree::tarball::replay_in_nar_order;
use swh_bridge::hashing::tree::{ExecutableRule, Limits};
use swh_bridge::recipes::Recipe;

#[path = "panic_hook.rs"]
mod panic_hook;

fuzz_target!(|data: &[u8]| {
    panic_hook::restore_default();
    let limits = Limits { max_bytes: 1 << 20, max_nodes: 1000, max_depth: 64 };
    let _ = Node::from_tar(data, limits, ExecutableRule::Owner);
    if let Ok(mut sink) = NarHasher::new(HashAlgo::Sha256) {
        let _ = replay_in_nar_order(data, b"top", limits, ExecutableRule::Owner, &mut sink);
    }
    let _ = Recipe::create(data);
});
