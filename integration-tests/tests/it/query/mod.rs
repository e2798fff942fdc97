//! The query service end to end: incidents made by a real dispatch from reports and commands
//! over a private nats-server, read back through `whistle.v1.CommandCenter` by a tonic client
//! over the network, plus health, reflection and gRPC-web on the same listener.

mod hotspots;
mod incidents;
mod lists;
mod orders;
mod proactive;
mod service;
