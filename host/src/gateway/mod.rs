//! The gateway: the gate in front of every route, request middleware, proxied routes (`routes:`),
//! and forward auth for a proxy in front. Imports `http` for its answers, never `api`.

pub mod forward_auth;
pub mod gate;
pub mod middleware;
pub mod proxy;
mod upstream_pool;
