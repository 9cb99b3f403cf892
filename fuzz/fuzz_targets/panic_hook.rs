//! Shared by the fuzz targets that reach preflate-rs.

/// libfuzzer-sys's panic hook aborts at once, even inside the `catch_unwind` with which the
/// library contains preflate-rs's panics; the default hook lets those be caught, while a panic
/// that escapes still reaches libfuzzer-sys and counts as a crash.
pub fn restore_default() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| drop(std::panic::take_hook()));
}
