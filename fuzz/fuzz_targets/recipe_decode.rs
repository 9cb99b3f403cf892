//! A recipe file is untrusted: decoding any bytes, and applying whatever decodes to a small
//! tree, must fail cleanly, never panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swh_bridge::hashing::tree::memory::Node;
use swh_bridge::recipes::Recipe;

#[path = "panic_hook.rs"]
mod panic_hook;

fuzz_target!(|data: &[u8]| {
    panic_hook::restore_default();
    let Ok(mut recipe) = Recipe::decode(data) else { return };
    let mut tree = Node::empty_directory();
    tree.insert(b"pkg/a", Node::File { executable: false, contents: b"a".to_vec() }).unwrap();
    // Past the tree check, so that the layers are applied.
    recipe.tree = tree.swhid();
    let _ = recipe.apply(&tree);
});
