//! Request-path canonicalization: one canonical path, computed once per request and used both for matching
//! and for serving.
//!
//! Input: the request-target path exactly as received, without the query. Output, or an error (answer 400):
//!
//! 1. The path must start with `/` and be at most [`MAX_PATH_LEN`] bytes.
//! 2. Rejected: raw or percent-encoded control characters (0x00–0x1F, 0x7F, including NUL); an encoded `/`
//!    (`%2F`); a raw or encoded backslash (`\`, `%5C`); a malformed escape (`%`, `%4`, `%zz`); escapes (and raw
//!    characters) that together decode to bytes that are not valid UTF-8; a raw `?` or `#` (the caller must
//!    have split off the query; seeing one means it did not); a double-encoded escape (`%25` followed by
//!    two hex digits, e.g. `%252e`); a raw `;` (path parameters, which servlet containers strip); a
//!    segment ending in `.` or an encoded space other than `.` and `..` (`/vault./x`, which Windows
//!    servers read as `/vault/x`). These are spellings an upstream could read as another path.
//! 3. Escapes of unreserved characters (ALPHA / DIGIT / `-` `.` `_` `~`) are decoded; every other escape stays
//!    an escape, with upper-case hex (`%3a` → `%3A`, `%c3%a9` → `%C3%A9`). `%25` stays `%25`, so nothing is
//!    decoded twice.
//! 4. Raw characters that are not allowed in a path (RFC 3986 `pchar`: space, `"`, `<`, `>`, `[`, `]`, `^`,
//!    `` ` ``, `{`, `|`, `}` and every non-ASCII character) are percent-encoded, so each path has exactly one
//!    spelling. Sub-delims other than `;` (`!$&'()*+,=`), `:` and `@` are ordinary characters.
//! 5. Repeated slashes are merged (`//api///x` → `/api/x`).
//! 6. Dot segments (after decoding, so `%2e%2e` is `..`) are resolved as in RFC 3986 §5.2.4; `..` above the
//!    root stays at the root. A trailing slash is kept (`/api/admin/` stays; `/api/admin/.` → `/api/admin/`,
//!    `/api/x/..` → `/api/`).
//!
//! Case is not changed: `/API/admin` stays `/API/admin`. Case rules belong to the pattern sets
//! (see `CaseMode`).

use thiserror::Error;

/// Longest accepted raw request path, in bytes (8 KiB).
pub const MAX_PATH_LEN: usize = 8 * 1024;

/// Why a request path was rejected. Messages are one line and never echo the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PathError {
    /// Empty, or does not start with `/`.
    #[error("request path does not start with '/'")]
    NotAbsolute,
    /// Longer than [`MAX_PATH_LEN`].
    #[error("request path is too long")]
    TooLong,
    /// A raw or percent-encoded control character (0x00–0x1F, 0x7F).
    #[error("request path contains a control character")]
    ControlChar,
    /// `%2F`.
    #[error("request path contains an encoded '/'")]
    EncodedSlash,
    /// A raw `\` or `%5C`.
    #[error("request path contains a backslash")]
    Backslash,
    /// `%` not followed by two hex digits.
    #[error("request path contains a malformed percent-escape")]
    MalformedEscape,
    /// Percent-escapes that decode to bytes that are not valid UTF-8.
    #[error("request path contains percent-escapes that are not valid UTF-8")]
    InvalidUtf8,
    /// A raw `?` or `#` (the query or fragment was not split off).
    #[error("request path contains a raw '?' or '#'")]
    QueryOrFragment,
    /// `%25` followed by two hex digits: an escape of an escape, which an upstream that decodes
    /// twice would read as another path.
    #[error("request path contains a double-encoded escape")]
    DoubleEncoded,
    /// A raw `;`: servlet containers and some frameworks cut a segment at `;` (path parameters),
    /// so `/vault;x/status` would be `/vault/status` to them.
    #[error("request path contains ';'")]
    Semicolon,
    /// A segment ending in `.` or an encoded space (other than `.` and `..`): some servers and
    /// file systems drop them, so `/vault./status` would be `/vault/status` to them.
    #[error("request path has a segment ending in '.' or a space")]
    TrailingDot,
}

/// Compute the canonical form of `raw_path` (the request-target path exactly as received, without the
/// query). See the module documentation for the rules.
pub fn canonicalize(raw_path: &str) -> Result<String, PathError> {
    if raw_path.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    let Some(rest) = raw_path.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };

    // `out` is the concatenation of "/<segment>" for every kept segment; `starts` holds the offset of each
    // kept segment's leading '/', so `..` can truncate back to the previous one.
    let mut out = String::with_capacity(raw_path.len());
    let mut starts: Vec<usize> = Vec::new();
    let mut utf8_run: Vec<u8> = Vec::new();
    let mut trailing_slash = false;

    for raw_seg in rest.split('/') {
        let mark = out.len();
        out.push('/');
        normalize_segment(raw_seg, &mut out, &mut utf8_run)?;
        let seg = &out[mark + 1..];
        if seg != "." && seg != ".." && (seg.ends_with('.') || seg.ends_with("%20")) {
            return Err(PathError::TrailingDot);
        }
        match &out[mark + 1..] {
            "" | "." => {
                out.truncate(mark);
                trailing_slash = true;
            }
            ".." => {
                out.truncate(mark);
                if let Some(prev) = starts.pop() {
                    out.truncate(prev);
                }
                trailing_slash = true;
            }
            _ => {
                starts.push(mark);
                trailing_slash = false;
            }
        }
    }

    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Normalize one segment of a path pattern's literal the same way [`canonicalize`] normalizes a request-path
/// segment, so that a literal can be compared with canonical paths byte for byte. `seg` must not contain `/`
/// (an encoded `/` is rejected as in request paths).
pub(super) fn canonical_segment(seg: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(seg.len());
    let mut utf8_run = Vec::new();
    normalize_segment(seg, &mut out, &mut utf8_run)?;
    Ok(out)
}

/// Append the normalized form of one raw segment (no `/` inside) to `out`.
///
/// `utf8_run` is scratch space for the current run of non-ASCII bytes (decoded or raw); a multi-byte UTF-8
/// sequence consists only of bytes >= 0x80, so validating every maximal run validates the whole segment.
fn normalize_segment(seg: &str, out: &mut String, utf8_run: &mut Vec<u8>) -> Result<(), PathError> {
    utf8_run.clear();
    let bytes = seg.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (value, encoded) = if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(2), Some(5))
                    if bytes.get(i + 3).copied().and_then(hex_value).is_some()
                        && bytes.get(i + 4).copied().and_then(hex_value).is_some() =>
                {
                    return Err(PathError::DoubleEncoded)
                }
                (Some(hi), Some(lo)) => {
                    i += 3;
                    ((hi << 4) | lo, true)
                }
                _ => return Err(PathError::MalformedEscape),
            }
        } else {
            i += 1;
            (b, false)
        };

        if value >= 0x80 {
            utf8_run.push(value);
            push_escape(out, value);
            continue;
        }
        flush_utf8_run(utf8_run)?;

        match value {
            0x00..=0x1F | 0x7F => return Err(PathError::ControlChar),
            b'\\' => return Err(PathError::Backslash),
            b'/' => return Err(PathError::EncodedSlash),
            b'?' | b'#' if !encoded => return Err(PathError::QueryOrFragment),
            b';' if !encoded => return Err(PathError::Semicolon),
            _ if is_unreserved(value) => out.push(char::from(value)),
            _ if encoded => push_escape(out, value),
            _ if is_sub_delim(value) || value == b':' || value == b'@' => {
                out.push(char::from(value))
            }
            // Raw characters that a path may not contain: encode them so each path has one spelling.
            _ => push_escape(out, value),
        }
    }
    flush_utf8_run(utf8_run)
}

fn flush_utf8_run(run: &mut Vec<u8>) -> Result<(), PathError> {
    if run.is_empty() {
        return Ok(());
    }
    let valid = std::str::from_utf8(run).is_ok();
    run.clear();
    if valid {
        Ok(())
    } else {
        Err(PathError::InvalidUtf8)
    }
}

fn push_escape(out: &mut String, value: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(value >> 4)]));
    out.push(char::from(HEX[usize::from(value & 0x0F)]));
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        match canonicalize(raw) {
            Ok(p) => p,
            Err(e) => panic!("{raw:?} rejected: {e}"),
        }
    }

    fn err(raw: &str) -> PathError {
        match canonicalize(raw) {
            Ok(p) => panic!("{raw:?} accepted as {p:?}"),
            Err(e) => e,
        }
    }

    // --- SECURITY.md "Paths" ---

    #[test]
    fn security_dot_dot() {
        assert_eq!(ok("/api/x/../admin"), "/api/admin");
    }

    #[test]
    fn security_encoded_dot_dot() {
        assert_eq!(ok("/api/%2e%2e/admin"), "/admin");
    }

    #[test]
    fn security_encoded_slash() {
        assert_eq!(err("/api%2Fadmin"), PathError::EncodedSlash);
        assert_eq!(err("/api%2fadmin"), PathError::EncodedSlash);
    }

    #[test]
    fn security_double_slash() {
        assert_eq!(ok("//api/admin"), "/api/admin");
        assert_eq!(ok("//api///x"), "/api/x");
        assert_eq!(ok("/api//admin//"), "/api/admin/");
    }

    #[test]
    fn security_case_is_preserved() {
        // Case is left alone here; the pattern sets decide (protected sets fold case).
        assert_eq!(ok("/API/admin"), "/API/admin");
    }

    #[test]
    fn security_trailing_slash_kept() {
        assert_eq!(ok("/api/admin/"), "/api/admin/");
        assert_eq!(ok("/api/admin/."), "/api/admin/");
    }

    #[test]
    fn security_semicolon_is_refused() {
        // Servlet containers read `/api/admin;x/..;/y` as `/api/admin/../y`: refuse the spelling.
        assert_eq!(err("/api/admin;x"), PathError::Semicolon);
        assert_eq!(err("/api/admin;x/..;/y"), PathError::Semicolon);
        // Encoded, it is an ordinary (kept-escaped) character that no server splits at.
        assert_eq!(ok("/api/admin%3bx"), "/api/admin%3Bx");
    }

    #[test]
    fn security_trailing_dots_and_spaces_are_refused() {
        assert_eq!(err("/api/admin./status"), PathError::TrailingDot);
        assert_eq!(err("/api/admin%2e/status"), PathError::TrailingDot);
        assert_eq!(err("/api/admin%20/status"), PathError::TrailingDot);
        assert_eq!(err("/api/admin/status."), PathError::TrailingDot);
        assert_eq!(err("/a/.../b"), PathError::TrailingDot);
        assert_eq!(ok("/api/v1.2/x"), "/api/v1.2/x");
        assert_eq!(ok("/api/.well-known/x"), "/api/.well-known/x");
    }

    #[test]
    fn security_encoded_slash_traversal() {
        assert_eq!(err("/public/..%2F..%2Fapi/admin"), PathError::EncodedSlash);
    }

    #[test]
    fn security_overlong() {
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(err(&long), PathError::TooLong);
        let max = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
        assert_eq!(ok(&max), max);
    }

    #[test]
    fn security_nul() {
        assert_eq!(err("/api/\0admin"), PathError::ControlChar);
        assert_eq!(err("/api/%00admin"), PathError::ControlChar);
    }

    // --- more ---

    #[test]
    fn must_be_absolute() {
        assert_eq!(err(""), PathError::NotAbsolute);
        assert_eq!(err("api/admin"), PathError::NotAbsolute);
        assert_eq!(err("*"), PathError::NotAbsolute);
        assert_eq!(err("%2Fapi"), PathError::NotAbsolute);
    }

    #[test]
    fn dot_segments_any_encoding() {
        assert_eq!(ok("/api/%2E%2E/admin"), "/admin");
        assert_eq!(ok("/api/.%2e/admin"), "/admin");
        assert_eq!(ok("/api/%2e./admin"), "/admin");
        assert_eq!(ok("/api/%2e/admin"), "/api/admin");
        assert_eq!(ok("/./"), "/");
        assert_eq!(ok("/."), "/");
        assert_eq!(ok("/a/./b/./"), "/a/b/");
        assert_eq!(ok("/a/b/c/./../../g"), "/a/g");
        assert_eq!(ok("/a/x/.."), "/a/");
        assert_eq!(ok("/a/x/%2e%2e"), "/a/");
        // `..x` is an ordinary segment (`...` ends in a dot: refused, see above).
        assert_eq!(ok("/a/..x/b"), "/a/..x/b");
    }

    #[test]
    fn dot_dot_above_root_stays_at_root() {
        assert_eq!(ok("/.."), "/");
        assert_eq!(ok("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(ok("/a/../../../b"), "/b");
        assert_eq!(ok("/../"), "/");
    }

    #[test]
    fn double_encoding_is_refused() {
        // An upstream that decodes twice would read `%252e%252e` as `..`.
        assert_eq!(err("/api/%252e%252e/admin"), PathError::DoubleEncoded);
        assert_eq!(err("/api/%252F"), PathError::DoubleEncoded);
        assert_eq!(err("/api/%2541"), PathError::DoubleEncoded);
        // A percent sign that starts no escape once decoded is fine, and never decoded twice.
        assert_eq!(ok("/%25"), "/%25");
        assert_eq!(ok("/100%25-sure"), "/100%25-sure");
    }

    #[test]
    fn hex_case_is_normalized() {
        assert_eq!(ok("/a%3ab"), "/a%3Ab");
        assert_eq!(ok("/a%3Ab"), "/a%3Ab");
        assert_eq!(ok("/a%3bb"), "/a%3Bb");
        // Kept escapes of reserved characters stay distinct from the raw character.
        assert_ne!(ok("/a%3Ab"), ok("/a:b"));
    }

    #[test]
    fn unreserved_escapes_are_decoded() {
        assert_eq!(ok("/%7Euser"), "/~user");
        assert_eq!(ok("/%7euser"), "/~user");
        assert_eq!(ok("/%61%70%69/%41dmin"), "/api/Admin");
        assert_eq!(ok("/a%2Db%5Fc%2Ed"), "/a-b_c.d");
        assert_eq!(ok("/%30%39"), "/09");
    }

    #[test]
    fn unicode_escapes_kept_as_escapes() {
        assert_eq!(ok("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(ok("/%E2%82%AC"), "/%E2%82%AC");
        assert_eq!(ok("/%F0%9F%98%80/x"), "/%F0%9F%98%80/x");
    }

    #[test]
    fn raw_unicode_is_encoded() {
        // One spelling per path: raw and escaped forms canonicalize identically.
        assert_eq!(ok("/café"), "/caf%C3%A9");
        assert_eq!(ok("/café"), ok("/caf%C3%A9"));
        assert_eq!(ok("/é%C3%A9"), "/%C3%A9%C3%A9");
        // An escaped lead byte followed by a raw character is not UTF-8.
        assert_eq!(err("/%C3é"), PathError::InvalidUtf8);
    }

    #[test]
    fn invalid_utf8_escapes_rejected() {
        assert_eq!(err("/%ff"), PathError::InvalidUtf8);
        assert_eq!(err("/%C3"), PathError::InvalidUtf8);
        assert_eq!(err("/%C3/%A9"), PathError::InvalidUtf8);
        assert_eq!(err("/%C0%AF"), PathError::InvalidUtf8); // overlong '/'
        assert_eq!(err("/%ED%A0%80"), PathError::InvalidUtf8); // surrogate
        assert_eq!(err("/%E2%82"), PathError::InvalidUtf8);
        assert_eq!(err("/%E2%82x"), PathError::InvalidUtf8);
    }

    #[test]
    fn malformed_escapes_rejected() {
        assert_eq!(err("/%"), PathError::MalformedEscape);
        assert_eq!(err("/%4"), PathError::MalformedEscape);
        assert_eq!(err("/%4/x"), PathError::MalformedEscape);
        assert_eq!(err("/%zz"), PathError::MalformedEscape);
        assert_eq!(err("/%g0"), PathError::MalformedEscape);
        assert_eq!(err("/a%"), PathError::MalformedEscape);
    }

    #[test]
    fn control_characters_rejected() {
        assert_eq!(err("/a\tb"), PathError::ControlChar);
        assert_eq!(err("/a\nb"), PathError::ControlChar);
        assert_eq!(err("/a\x7fb"), PathError::ControlChar);
        assert_eq!(err("/a%0Ab"), PathError::ControlChar);
        assert_eq!(err("/a%0db"), PathError::ControlChar);
        assert_eq!(err("/a%1F"), PathError::ControlChar);
        assert_eq!(err("/a%7f"), PathError::ControlChar);
    }

    #[test]
    fn backslash_rejected() {
        assert_eq!(err("/api\\admin"), PathError::Backslash);
        assert_eq!(err("/api%5Cadmin"), PathError::Backslash);
        assert_eq!(err("/api%5cadmin"), PathError::Backslash);
        assert_eq!(err("/public/..%5C..%5Capi"), PathError::Backslash);
    }

    #[test]
    fn raw_query_or_fragment_rejected() {
        assert_eq!(err("/api/admin?x=/health"), PathError::QueryOrFragment);
        assert_eq!(err("/api/admin#x"), PathError::QueryOrFragment);
        // Encoded, they are ordinary (kept-escaped) characters.
        assert_eq!(ok("/api/admin%3fx=health%23y"), "/api/admin%3Fx=health%23y");
    }

    #[test]
    fn sub_delims_and_disallowed_ascii() {
        assert_eq!(ok("/a!$&'()*+,=:@b"), "/a!$&'()*+,=:@b");
        assert_eq!(ok("/a b"), "/a%20b");
        assert_eq!(ok("/a%20b"), "/a%20b");
        assert_eq!(ok("/{x}|<y>"), "/%7Bx%7D%7C%3Cy%3E");
    }

    #[test]
    fn root_and_simple() {
        assert_eq!(ok("/"), "/");
        assert_eq!(ok("//"), "/");
        assert_eq!(ok("/health"), "/health");
        assert_eq!(ok("/health/"), "/health/");
    }

    #[test]
    fn idempotent() {
        for raw in [
            "/api/x/../admin",
            "//a//b/",
            "/caf%c3%a9/%7e",
            "/a b/%3a%3bx",
            "/api/%25/admin",
            "/x/.%2E/y/.",
        ] {
            let once = ok(raw);
            assert_eq!(ok(&once), once, "{raw}");
        }
    }

    #[test]
    fn error_messages_do_not_echo_path() {
        let e = err("/secret-token-abc%2F");
        assert!(!e.to_string().contains("secret"));
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn canonical_segment_matches_path_rules() {
        assert_eq!(canonical_segment("%7euser%3a"), Ok("~user%3A".to_owned()));
        assert_eq!(canonical_segment("a%2Fb"), Err(PathError::EncodedSlash));
    }
}
