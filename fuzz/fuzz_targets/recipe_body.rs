//! A recipe's body once decompressed is untrusted too: postcard-shaped input that decodes to
//! any recipe at all, applied to a small tree whose SWHID it is given, must fail cleanly (or
//! rebuild a file that passes its own hash), never panic or allocate without bound. Fuzzing the
//! body rather than the file keeps the mutations past the xz layer.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use swh_bridge::hashing::tree::memory::Node;
use swh_bridge::recipes::Recipe;

/// The recipe file's frame (docs/recipe-format.md): magic and format version 1.
const FRAME: &[u8] = b"swh-bridge recipe\n\x01";

#[path = "panic_hook.rs"]
mod panic_hook;

fuzz_target!(|body: &[u8]| {
    panic_hook::restore_default();
    let mut encoder = liblzma::write::XzEncoder::new(FRAME.to_vec(), 0);
    encoder.write_all(body).unwrap();
    let Ok(mut recipe) = Recipe::decode(&encoder.finish().unwrap()) else { return };
    let mut tree = Node::empty_directory();
    tree.insert(b"pkg/a", Node::File { executable: false, contents: b"a".to_vec() }).unwrap();
    tree.insert(b"pkg/b/c", Node::File { executable: true, contents: vec![b'c'; 3000] }).unwrap();
    recipe.tree = tree.swhid();
    let _ = recipe.apply(&tree);
});
