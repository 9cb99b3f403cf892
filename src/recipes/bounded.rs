//! Deserialising a recipe's sequences within a memory budget.
//!
//! A recipe body is untrusted and its size is bounded, but postcard spends as little as two
//! bytes on an element that takes tens of bytes in memory (an empty tar member, an empty header
//! run), so a small hostile body could still ask for gigabytes. Every sequence of structs in a
//! recipe is read through [`vec`], which charges each element's in-memory size against a budget
//! that [`with_budget`] sets for one decode, and refuses the recipe once it is spent.

use std::cell::Cell;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Budget {
    Unbounded,
    Left(usize),
    Spent,
}

thread_local! {
    static BUDGET: Cell<Budget> = const { Cell::new(Budget::Unbounded) };
}

/// Runs `decode` with `bytes` of budget for the sequences it reads, and says why it failed
/// (the budget was spent, or the decoder's own reason: postcard drops the messages of the
/// errors it is handed). Outside of it, sequences are read without a bound (recipes the
/// program made itself).
pub(super) fn with_budget<T, E: std::fmt::Display>(
    bytes: usize,
    decode: impl FnOnce() -> Result<T, E>,
) -> Result<T, Undecodable> {
    let outer = BUDGET.replace(Budget::Left(bytes));
    let result = decode();
    let spent = BUDGET.get() == Budget::Spent;
    BUDGET.set(outer);
    match result {
        Ok(value) => Ok(value),
        Err(_) if spent => Err(Undecodable::OverBudget { bytes }),
        Err(e) => Err(Undecodable::Malformed(e.to_string())),
    }
}

/// Why a body could not be decoded within its budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum Undecodable {
    #[error("it holds more elements than {bytes} bytes of memory can")]
    OverBudget { bytes: usize },
    #[error("{0}")]
    Malformed(String),
}

/// Charges `bytes` against the budget; false once it is spent.
fn charge(bytes: usize) -> bool {
    match BUDGET.get() {
        Budget::Unbounded => true,
        Budget::Left(left) if left >= bytes => {
            BUDGET.set(Budget::Left(left - bytes));
            true
        }
        Budget::Left(_) | Budget::Spent => {
            BUDGET.set(Budget::Spent);
            false
        }
    }
}

/// `#[serde(deserialize_with = "bounded::vec")]`: a `Vec<T>` charged against the budget.
pub(crate) fn vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Elements<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Elements<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a sequence")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            loop {
                if !charge(std::mem::size_of::<T>()) {
                    return Err(A::Error::custom("the memory budget is spent"));
                }
                match seq.next_element()? {
                    Some(element) => out.push(element),
                    None => return Ok(out),
                }
            }
        }
    }
    deserializer.deserialize_seq(Elements(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, serde::Serialize)]
    struct Wide {
        #[serde(deserialize_with = "vec")]
        items: Vec<[u64; 8]>,
    }

    #[test]
    fn sequences_past_the_budget_are_refused() {
        let body = postcard::to_allocvec(&Wide { items: vec![[0; 8]; 100] }).unwrap();
        let decode = || postcard::from_bytes::<Wide>(&body);
        assert!(with_budget(101 * 64, decode).is_ok());
        assert_eq!(
            with_budget(50 * 64, decode).unwrap_err().to_string(),
            "it holds more elements than 3200 bytes of memory can"
        );
        assert!(decode().is_ok(), "no budget outside with_budget");
    }
}
