//! Property tests: NAR write → parse → write, and write → restore on disk → dump (ours and
//! `nix-store --dump`), give back the same bytes for any tree; whatever the parser accepts from
//! corrupted input is canonical.

use proptest::prelude::*;
use swh_bridge::hashing::nar::{self, NarWriter};
use swh_bridge::hashing::swhid_hasher::SwhidHasher;
use swh_bridge::hashing::tree::Limits;
use swh_bridge::hashing::tree::memory::{Node, NodeBuilder};

use crate::reference_tools::{output, tool};
use crate::trees::temp_dir;

fn name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>().prop_filter("not / or NUL", |b| *b != b'/' && *b != 0), 1..6)
        .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn tree() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(executable, contents)| Node::File { executable, contents }),
        proptest::collection::vec(any::<u8>().prop_filter("not NUL", |b| *b != 0), 1..20)
            .prop_map(|target| Node::Symlink { target }),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        proptest::collection::btree_map(name(), inner, 0..6).prop_map(Node::Directory)
    })
}

fn nar_bytes(node: &Node) -> Vec<u8> {
    let mut out = Vec::new();
    node.visit(&mut NarWriter::new(&mut out).unwrap()).unwrap();
    out
}

proptest! {
    #[test]
    fn nar_write_parse_write_is_identity(node in tree()) {
        let bytes = nar_bytes(&node);
        let mut builder = NodeBuilder::new();
        let read = nar::parse(&bytes[..], &mut builder).unwrap();
        prop_assert_eq!(read, bytes.len() as u64);
        let rebuilt = builder.finish().unwrap();
        prop_assert_eq!(&rebuilt, &node);
        prop_assert_eq!(nar_bytes(&rebuilt), bytes.clone());

        // The SWHID computed from the NAR stream equals the one from the tree itself.
        let mut from_nar = SwhidHasher::new();
        nar::parse(&bytes[..], &mut from_nar).unwrap();
        let mut from_tree = SwhidHasher::new();
        node.visit(&mut from_tree).unwrap();
        prop_assert_eq!(from_nar.finish().unwrap(), from_tree.finish().unwrap());
    }

    #[test]
    fn parser_survives_corruption(node in tree(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut bytes = nar_bytes(&node);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let mut builder = NodeBuilder::new();
        let limits = Limits { max_bytes: 1 << 20, max_nodes: 1000, max_depth: 64 };
        // Whatever the parser accepts is canonical: it serialises back to exactly the bytes read.
        if let Ok(read) = nar::parse_with_limits(&bytes[..], &mut builder, limits) {
            let node = builder.finish().unwrap();
            prop_assert_eq!(nar_bytes(&node), bytes[..read as usize].to_vec());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn nar_restore_dump_is_identity(node in tree()) {
        let bytes = nar_bytes(&node);
        let tmp = temp_dir();
        let dest = tmp.path().join("restored");
        nar::restore(&bytes[..], &dest, None, Limits::default()).unwrap();
        let mut dumped = Vec::new();
        nar::dump_path(&dest, &mut dumped).unwrap();
        prop_assert!(dumped == bytes);
        prop_assert!(output(tool("nix-store").arg("--dump").arg(&dest)) == bytes, "nix-store --dump disagrees");
    }
}
