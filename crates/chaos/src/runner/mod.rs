//! The run: servers, replicas, load, the fault schedule, the drain and the final read.

mod config;
mod faults;
mod fleet;
mod history;
mod load;
mod report;
mod run;

pub use config::{plan, Config, Fault, Launcher, Planned};
pub use report::{FaultRecord, Report};
pub use run::run;
