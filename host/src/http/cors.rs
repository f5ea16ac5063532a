//! CORS: the preflight answer and the headers added to an answer, per `server.cors`.

use poem::{
    http::{header, HeaderValue, StatusCode},
    Response,
};

use crate::config::CorsConfig;

fn allowed_origin<'a>(cors: &CorsConfig, origin: &'a str) -> Option<&'a str> {
    if cors.origins.iter().any(|o| o == "*") {
        Some(if cors.credentials { origin } else { "*" })
    } else if cors.origins.iter().any(|o| o == origin) {
        Some(origin)
    } else {
        None
    }
}

pub(crate) fn preflight(cors: &CorsConfig, origin: &str) -> Response {
    let mut r = Response::builder().status(StatusCode::NO_CONTENT).finish();
    if allowed_origin(cors, origin).is_some() {
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&cors.allow_methods.join(", ")) {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        if let Ok(v) = HeaderValue::from_str(&cors.allow_headers.join(", ")) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        if let Ok(v) = HeaderValue::from_str(&cors.max_age.to_string()) {
            h.insert(header::ACCESS_CONTROL_MAX_AGE, v);
        }
    }
    r
}

pub(crate) fn add_cors(resp: &mut Response, cors: &CorsConfig, origin: &str) {
    let Some(allow) = allowed_origin(cors, origin) else {
        return;
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(allow) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    if allow != "*" {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if cors.credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&cors.expose_headers.join(", ")) {
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
}
