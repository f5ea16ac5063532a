//! Listening: TLS material and the connection guard against slow clients.

pub mod conn_guard;
pub mod tls;
