//! What the server tells about itself: Prometheus metrics and traces/logs.

pub mod metrics;
pub mod telemetry;
