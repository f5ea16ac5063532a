//! The HTTP surface's parts: listeners (TLS, the slow-client guard) and the server.

pub mod listen;
pub mod server;
