//! Trust on both doors and in the database: the gRPC door's role × RPC matrix; PostgreSQL's separate
//! roles and passwords; and on the NATS door, against the real configuration: who may publish and subscribe to
//! what (a deny-by-default matrix), the actor bound to the identity for every verb, refused and
//! revoked credentials, and JetStream's encryption at rest.

mod at_rest;
mod database;
mod forged;
mod grpc_matrix;
mod matrix;
mod revocation;
