//! How an error is shown where one line must hold it (a JSON field, a log line, a state
//! database column): its message, then each of its sources', joined by `: `.

use std::error::Error;

/// `err` and its sources, on one line.
pub fn error_chain(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("failed to read the recipe")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn sources_follow_the_message() {
        let err = Outer(std::io::Error::other("disk on fire"));
        assert_eq!(super::error_chain(&err), "failed to read the recipe: disk on fire");
    }
}
