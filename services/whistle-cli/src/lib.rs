//! The parts of the `whistle` command line that other crates use too: the JetStream backup and
//! restore (`whistle backup-streams`, `restore-streams`, also run by the restore drill), the
//! pipeline ceiling benchmark (`whistle bench ceiling`, also run by the integration tests) and the
//! pure rules and formatting of the benchmarks, and the units' yearly evaluation written as files
//! (`whistle volunteers evaluate`, also run by it::volunteers). The commands themselves live in
//! the binary (`main.rs`).

pub mod backup;
pub mod ceiling;
pub mod cpu;
pub mod evaluation;
pub mod fill;
pub mod stats;
