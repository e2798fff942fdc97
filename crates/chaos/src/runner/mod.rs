//! The run: servers, replicas, load, the fault schedule, the drain and the final read.

mod commands;
mod config;
mod faults;
mod fleet;
mod history;
mod load;
mod report;
mod run;
mod upgrade;

pub use config::{plan, Config, Fault, Launcher, Planned, Upgrade};
pub use report::{FaultRecord, Replacement, Report, UpgradeRecord};
pub use run::run;
