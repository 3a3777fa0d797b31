//! The library behind `wagate-bench`: the benchmark run, the crash test, and the pieces
//! they share (a `wagate serve` child process, a load generator, a webhook receiver). A
//! library so that wagate's own test suite runs the crash test at a small size
//! (`crates/wagate/tests/crash.rs`) against the binary it just built.

/// Writes a line to stdout (the report), ignoring a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub mod baseline;
pub mod bench;
pub mod cluster;
pub mod crash;
pub mod inflight;
pub mod load;
pub mod server;
pub mod sink;
pub mod svg;
