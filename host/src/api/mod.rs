//! The built-in API (`/api/auth/*`, `/api/admin/*`), `explain`, and the OpenAPI documents.

pub mod explain;
pub mod routes;

pub use routes::{allow, finish_spec, Api, Apis, DocsApi, GatewayApi};
