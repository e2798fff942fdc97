//! NATS authentication of Whistle. nats-server (≥ 2.10) runs in server-config mode with **auth
//! callout**: services (dispatch, query, admin, the callout itself) are static nkey users that
//! bypass the callout; every other connection presents a bearer token (`wst_…`, the same tokens
//! the query service accepts) and is authorized by [`callout::Callout`], which answers with a
//! short-lived user JWT carrying its role's subject permissions ([`permissions`]).
//!
//! This crate renders the server configuration ([`config::ServerConfig`]), keeps the key
//! material ([`secrets::Secrets`]), runs the callout and defines the hardened streams the admin
//! creates ([`streams`]). It does not decide what a command may do: dispatch still checks every
//! actor against the org tree.

pub mod callout;
pub mod config;
mod error;
pub mod jwt;
pub mod limit;
pub mod permissions;
pub mod secrets;
pub mod streams;

pub use callout::{Callout, Keys, Options, SharedOrg};
pub use config::{
    Cluster, LeafHub, LeafRemote, RouteTls, ServerConfig, Tls, LEAF_USER, ROUTE_USER,
};
pub use error::{Error, Result};
pub use limit::RateLimiter;
pub use permissions::{inbox_prefix, Identity, Permissions, Service};
pub use secrets::Secrets;
