//! Zip files are untrusted: reading one into a tree as SWH unpacks it, and making a recipe of it
//! (which rebuilds it at once), must fail cleanly on any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swh_bridge::hashing::tree::Limits;
use swh_bridge::hashing::tree::memory::Node;
use swh_bridge::recipes::Recipe;

#[path = "panic_hook.rs"]
mod panic_hook;

fuzz_target!(|data: &[u8]| {
    panic_hook::restore_default();
    let limits = Limits { max_bytes: 1 << 20, max_nodes: 1000, max_depth: 64 };
    let _ = Node::from_zip(data, limits);
    let _ = Recipe::create(data);
});
