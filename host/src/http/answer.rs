//! Every answer the server writes itself, once: the JSON error body, the answer to each kind of
//! refused request, and the error a body cut off at the size limit fails with.

use poem::{
    http::{header, HeaderValue, StatusCode},
    Response,
};

use crate::auth::Denial;

/// A JSON error answer with the seed's body shape.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(serde_json::json!({ "error": message }).to_string())
}

/// The status a refused request is answered with.
pub fn denial_status(d: &Denial) -> StatusCode {
    match d {
        Denial::NoToken | Denial::InvalidToken(_) => StatusCode::UNAUTHORIZED,
        Denial::Forbidden(_) => StatusCode::FORBIDDEN,
        Denial::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Denial::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The answer to a refused request (status, fixed body, `WWW-Authenticate` on 401).
pub fn denial_response(d: &Denial) -> Response {
    match d {
        Denial::NoToken => {
            let mut r = error_response(denial_status(d), "Authentication required");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portcullis\""),
            );
            r
        }
        Denial::InvalidToken(_) => {
            let mut r = error_response(denial_status(d), "Invalid or expired token");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portcullis\", error=\"invalid_token\""),
            );
            r
        }
        Denial::Forbidden(_) => error_response(denial_status(d), "Access denied"),
        Denial::Unavailable(_) => {
            error_response(denial_status(d), "Authentication service unavailable")
        }
        Denial::Internal(_) => error_response(denial_status(d), "Internal Server Error"),
    }
}

/// The error a body without a declared length fails with past `server.body_size_limit`.
#[derive(Debug)]
pub struct BodyTooLarge;

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body too large")
    }
}

impl std::error::Error for BodyTooLarge {}

impl BodyTooLarge {
    /// Whether `err`, or an error it wraps, is a body cut off at the limit.
    pub fn caused(err: &(dyn std::error::Error + 'static)) -> bool {
        let mut next = Some(err);
        while let Some(e) = next {
            if e.is::<BodyTooLarge>()
                || e.downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .is_some_and(|inner| inner.is::<BodyTooLarge>())
            {
                return true;
            }
            next = e.source();
        }
        false
    }
}
