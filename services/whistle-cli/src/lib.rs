//! The parts of the `whistle` command line that other crates use too: the pipeline ceiling
//! benchmark (`whistle bench ceiling`, also run by the integration tests) and the pure rules and
//! formatting of the benchmarks. The commands themselves live in the binary (`main.rs`).

pub mod ceiling;
pub mod cpu;
pub mod fill;
pub mod stats;
