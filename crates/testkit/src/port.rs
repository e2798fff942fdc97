//! Free loopback ports.

use std::net::TcpListener;

use crate::Error;

/// Ports other people's servers use on shared machines (NATS, PostgreSQL, gRPC and their usual
/// test offsets); never picked, so a test server cannot take one that a developer's server
/// briefly released.
const RESERVED_PORTS: [u16; 7] = [4222, 5432, 50051, 54222, 54322, 55432, 55532];

/// A free loopback port that is not one of the reserved ones.
pub fn free_port() -> Result<u16, Error> {
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(Error::io("binding a free port"))?
            .port();
        if !RESERVED_PORTS.contains(&port) {
            return Ok(port);
        }
    }
    Err(Error::NoFreePort)
}
