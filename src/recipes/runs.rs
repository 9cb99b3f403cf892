//! Byte runs: how a header differs from the one predicted for it (the previous header of the
//! same kind, with the fields the recipe computes filled in). Consecutive headers of an archive
//! mostly differ in a few fields (a name, a time, a mode), so a few runs stand for a whole header.

use serde::{Deserialize, Serialize};

use super::RecipeError;

/// Bytes at an offset in a header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub offset: u16,
    pub bytes: Vec<u8>,
}

/// Runs of bytes where `new` differs from `old` (of the same length, at most 64 KiB); runs closer
/// than 4 bytes are merged, since a run costs more than a few equal bytes.
pub(crate) fn diff(old: &[u8], new: &[u8]) -> Vec<Run> {
    assert_eq!(old.len(), new.len(), "headers of one kind have one length");
    let len = new.len();
    let mut runs: Vec<Run> = Vec::new();
    let mut i = 0;
    while i < len {
        if old[i] == new[i] {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i + 1;
        while end < len && (old[end] != new[end] || (end + 4 < len && old[end..end + 4] != new[end..end + 4])) {
            end += 1;
        }
        let offset = u16::try_from(start).expect("headers are shorter than 64 KiB");
        runs.push(Run { offset, bytes: new[start..end].to_vec() });
        i = end;
    }
    runs
}

/// Writes `runs` over `header`; `what` names the header in errors.
pub(crate) fn patch(header: &mut [u8], runs: &[Run], what: &str) -> Result<(), RecipeError> {
    for run in runs {
        let start = usize::from(run.offset);
        let end = start.checked_add(run.bytes.len()).filter(|&e| e <= header.len()).ok_or_else(|| {
            RecipeError::Damaged(format!(
                "a run at {start} of {} bytes overflows a {what} of {} bytes",
                run.bytes.len(),
                header.len()
            ))
        })?;
        header[start..end].copy_from_slice(&run.bytes);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nearby_differences_merge_and_distant_ones_do_not() {
        let mut old = [0u8; 512];
        let mut new = [0u8; 512];
        old[..11].copy_from_slice(b"pkg/old.txt");
        new[..11].copy_from_slice(b"pkg/new.txz");
        new[300] = 7;
        assert_eq!(diff(&old, &new).len(), 2);
    }

    proptest! {
        #[test]
        fn diffs_patch_back_exactly(pairs in proptest::collection::vec(any::<(u8, u8)>(), 0..600)) {
            let (old, new): (Vec<u8>, Vec<u8>) = pairs.into_iter().unzip();
            let runs = diff(&old, &new);
            let mut patched = old.clone();
            patch(&mut patched, &runs, "header").unwrap();
            prop_assert_eq!(patched, new);
        }
    }
}
