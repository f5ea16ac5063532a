//! The HTTP surface's parts: every answer the server writes itself, CORS, and listening (TLS, the
//! slow-client guard, the listeners). Imports nothing from `gateway` or `api`.

pub mod answer;
pub mod cors;
pub mod listen;
pub mod server;
