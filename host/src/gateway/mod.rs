//! The gateway: proxied routes (`routes:`) and forward auth for a proxy in front.

pub mod forward_auth;
pub mod proxy;
