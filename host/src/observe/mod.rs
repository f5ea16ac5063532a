//! What the server tells about itself: Prometheus metrics and traces/logs. Never imports `http`,
//! `gateway` or `api` (they report to it).

pub mod metrics;
pub mod telemetry;
