//! Finding the bearer token: the configured header (`Bearer`, scheme case-insensitive, RFC 6750),
//! then — only when opted in — a query parameter and a cookie.

use std::borrow::Cow;

use poem::http::HeaderMap;

use crate::config::TokenConfig;

/// Why no usable token was found.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Several `Authorization` headers, or a bearer value with characters RFC 6750 forbids.
    Malformed,
}

/// Extracts the token. `Ok(None)` = no token at all (401 "Authentication required"). A token from
/// a header or a cookie is borrowed; only a query parameter, which may need decoding, is copied.
pub fn extract<'a>(
    cfg: &TokenConfig,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> Result<Option<Cow<'a, str>>, TokenError> {
    match extract_unchecked(cfg, headers, query)? {
        Some(t) => checked(t).map(Some).ok_or(TokenError::Malformed),
        None => Ok(None),
    }
}

/// [`extract`] without the `b64token` alphabet check: the token's bytes as the request brought
/// them. The caller must pass them through [`checked`] before they are used for anything but
/// finding them among tokens that passed it.
pub fn extract_unchecked<'a>(
    cfg: &TokenConfig,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> Result<Option<Cow<'a, [u8]>>, TokenError> {
    let mut values = headers.get_all(&cfg.header_name).iter();
    if let Some(first) = values.next() {
        if values.next().is_some() {
            return Err(TokenError::Malformed);
        }
        let value = first.as_bytes().trim_ascii();
        let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
            Some(i) => (&value[..i], &value[i + 1..]),
            None => (value, &[][..]),
        };
        if scheme.eq_ignore_ascii_case(b"bearer") {
            let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
            let token = &rest[start..];
            if token.is_empty() {
                return Ok(None);
            }
            return Ok(Some(Cow::Borrowed(token)));
        }
        // Another scheme (Basic, ...) is not ours: treated as no bearer token. A header value
        // that is not visible ASCII is malformed whatever its scheme.
        if first.to_str().is_err() {
            return Err(TokenError::Malformed);
        }
    }
    if let (Some(name), Some(q)) = (&cfg.query, query) {
        for pair in q.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if form_decode(k).as_deref() == Some(name.as_str()) {
                let v = form_decode(v).ok_or(TokenError::Malformed)?;
                if v.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(Cow::Owned(v.into_bytes())));
            }
        }
    }
    if let Some(name) = &cfg.cookie {
        for header in headers.get_all("cookie") {
            let Ok(s) = header.to_str() else { continue };
            for c in s.split(';') {
                let (k, v) = c.trim().split_once('=').unwrap_or((c.trim(), ""));
                if k == name && !v.is_empty() {
                    let v = v.trim_matches('"');
                    return Ok(Some(Cow::Borrowed(v.as_bytes())));
                }
            }
        }
    }
    Ok(None)
}

/// The token as text once it is known to be an RFC 6750 `b64token`; `None` when it is not.
pub fn checked(token: Cow<'_, [u8]>) -> Option<Cow<'_, str>> {
    if !well_formed(&token) {
        return None;
    }
    // A b64token is ASCII, so it is also valid UTF-8.
    match token {
        Cow::Borrowed(b) => std::str::from_utf8(b).ok().map(Cow::Borrowed),
        Cow::Owned(v) => String::from_utf8(v).ok().map(Cow::Owned),
    }
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
///
/// Checked on every request, over the whole token: written without early exits so that the compiler
/// checks many bytes at once.
pub fn well_formed(token: &[u8]) -> bool {
    let body = match token.iter().rposition(|&b| b != b'=') {
        Some(last) => &token[..=last],
        None => &[][..],
    };
    // Range tests on bytes, OR-ed into one flag with no branch and no lookup table: the compiler
    // checks 16 or 32 bytes at a time.
    let bad = body.iter().fold(0u8, |bad, &b| {
        let alpha = (b | 0x20).wrapping_sub(b'a') < 26;
        let digit = b.wrapping_sub(b'0') < 10;
        // `+` (0x2b) through `/` (0x2f), without `,` (0x2c): `+ - . /`.
        let punct = (b.wrapping_sub(b'+') < 5) & (b != b',');
        bad | u8::from(!(alpha | digit | punct | (b == b'_') | (b == b'~')))
    });
    !body.is_empty() && bad == 0
}

/// Decodes a query-string or form component: `%XX` escapes (two hex digits, nothing else) and `+`
/// as a space; `None` for a malformed escape or bytes that are not UTF-8.
pub(crate) fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::HeaderValue;

    fn cfg(query: Option<&str>, cookie: Option<&str>) -> TokenConfig {
        TokenConfig {
            header: "Authorization".into(),
            header_name: poem::http::header::AUTHORIZATION,
            query: query.map(Into::into),
            cookie: cookie.map(Into::into),
        }
    }

    fn with(h: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in h {
            m.append(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn the_b64token_alphabet_is_exactly_rfc_6750s_for_every_byte() {
        const ALPHABET: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/";
        for b in 0..=255u8 {
            let mut token = b"ab".to_vec();
            token.push(b);
            token.extend_from_slice(b"cd");
            let want = ALPHABET.contains(&b);
            assert_eq!(well_formed(&token), want, "byte {b:#04x}");
        }
        // Long enough for the vector loop, with the odd byte last.
        let long = format!("{}{}", "a".repeat(100), ",");
        assert!(!well_formed(long.as_bytes()));
        assert!(well_formed(
            format!("{}==", "Zz9-._~+/".repeat(20)).as_bytes()
        ));
        assert!(!well_formed(b"===="));
        assert!(!well_formed(b""));
        // Padding only at the end.
        assert!(well_formed(b"ab=="));
        assert!(!well_formed(b"a=b"));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let c = cfg(None, None);
        for v in ["Bearer abc.def", "bearer abc.def", "BEARER   abc.def"] {
            assert_eq!(
                extract(&c, &with(&[("authorization", v)]), None),
                Ok(Some("abc.def".into())),
                "{v}"
            );
        }
    }

    #[test]
    fn other_schemes_and_empty_bearer_are_no_token() {
        let c = cfg(None, None);
        assert_eq!(
            extract(&c, &with(&[("authorization", "Basic dXNlcjpwYXNz")]), None),
            Ok(None)
        );
        assert_eq!(
            extract(&c, &with(&[("authorization", "Bearer ")]), None),
            Ok(None)
        );
        // Mastra strips the first "Bearer " anywhere; here "NotBearer tok" is simply not a bearer token.
        assert_eq!(
            extract(&c, &with(&[("authorization", "NotBearer tok")]), None),
            Ok(None)
        );
        assert_eq!(extract(&c, &HeaderMap::new(), None), Ok(None));
    }

    #[test]
    fn duplicate_headers_and_bad_characters_are_malformed() {
        let c = cfg(None, None);
        let h = with(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert_eq!(extract(&c, &h, None), Err(TokenError::Malformed));
        assert_eq!(
            extract(&c, &with(&[("authorization", "Bearer a b")]), None),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            extract(&c, &with(&[("authorization", "Bearer a\"b")]), None),
            Err(TokenError::Malformed)
        );
        // Bytes that are not even UTF-8 (obs-text in a header value).
        let mut h = HeaderMap::new();
        h.append(
            "authorization",
            HeaderValue::from_bytes(b"Bearer ab\xffcd").unwrap(),
        );
        assert_eq!(extract(&c, &h, None), Err(TokenError::Malformed));
    }

    #[test]
    fn query_and_cookie_only_when_configured() {
        let off = cfg(None, None);
        assert_eq!(
            extract(&off, &HeaderMap::new(), Some("access_token=abc")),
            Ok(None)
        );
        assert_eq!(
            extract(&off, &with(&[("cookie", "session=abc")]), None),
            Ok(None)
        );
        let on = cfg(Some("access_token"), Some("session"));
        assert_eq!(
            extract(&on, &HeaderMap::new(), Some("x=1&access_token=abc")),
            Ok(Some("abc".into()))
        );
        assert_eq!(
            extract(&on, &with(&[("cookie", "a=1; session=xyz")]), None),
            Ok(Some("xyz".into()))
        );
        // The header wins over the query.
        let h = with(&[("authorization", "Bearer hdr")]);
        assert_eq!(
            extract(&on, &h, Some("access_token=q")),
            Ok(Some("hdr".into()))
        );
    }

    #[test]
    fn form_decoding_takes_two_hex_digits_and_nothing_else() {
        assert_eq!(form_decode("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(form_decode("%7e").as_deref(), Some("~"));
        assert_eq!(form_decode("%+1"), None);
        assert_eq!(form_decode("%-1"), None);
        assert_eq!(form_decode("%4"), None);
        assert_eq!(form_decode("%ff"), None);
    }
}
