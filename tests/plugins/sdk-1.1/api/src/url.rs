//! Building request URLs from untrusted values (a token's `sub`, a user id).

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `value` as one URL path segment, or `None` when no encoding can keep it one segment.
///
/// `/`, `?`, `#`, `%` and every other reserved byte are percent-encoded, so `../x` stays inside its
/// segment. An empty value, `.` and `..` are refused: URL parsers resolve them (even encoded, as
/// `%2e%2e`) as dot segments, which would change the path.
///
/// ```
/// use portcullis_plugin_api::path_segment;
/// assert_eq!(path_segment("user_1").as_deref(), Some("user_1"));
/// assert_eq!(path_segment("../x").as_deref(), Some("..%2Fx"));
/// assert_eq!(path_segment(".."), None);
/// ```
pub fn path_segment(value: &str) -> Option<String> {
    if value.is_empty() || value == "." || value == ".." {
        return None;
    }
    Some(encode(value))
}

/// `value` percent-encoded for a query string (`&`, `=`, `+`, `#` and the rest are escaped).
///
/// ```
/// use portcullis_plugin_api::query_value;
/// assert_eq!(query_value("a&b=c d"), "a%26b%3Dc%20d");
/// ```
pub fn query_value(value: &str) -> String {
    encode(value)
}

/// Checks a configured base URL (`api_base`, `base_url`, ...) and returns it without trailing
/// slashes: `https://` (or `http://`, which the host then refuses unless the instance sets
/// `dangerous.allow_http`), a host, and no query, fragment, credentials or spaces. `key` names the
/// option in the error.
pub fn base_url(key: &str, value: &str) -> Result<String, crate::PluginError> {
    let v = value.trim_end_matches('/');
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.contains(['?', '#', ' ', '@']) => Ok(v.to_string()),
        _ => Err(crate::PluginError::config(format!(
            "{key}: must be an https:// URL without query or fragment"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sub_cannot_leave_its_segment() {
        for hostile in ["../x", "a/b", "a?b=c", "a#b", "%2e%2e", "a b", "é"] {
            let seg = path_segment(hostile).unwrap_or_default();
            assert!(!seg.contains(['/', '?', '#', ' ']), "{hostile} -> {seg}");
            assert!(!seg.is_empty());
        }
        assert_eq!(path_segment("%2e%2e").as_deref(), Some("%252e%252e"));
        assert_eq!(path_segment("."), None);
        assert_eq!(path_segment(""), None);
    }
}
