//! The built-in API (`/api/auth/*`, `/api/admin/*`), `explain`, and the OpenAPI documents with
//! the route tree they describe.

pub mod docs;
pub mod explain;
pub mod route_docs;
pub mod routes;

pub use docs::endpoint;
pub use routes::{allow, finish_spec, Api, Apis, DocsApi, GatewayApi};
