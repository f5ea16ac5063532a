//! Path canonicalization and matching. For any raw path: no panic; a canonical path is absolute,
//! has no empty, `.` or `..` segment, no raw or encoded NUL, slash or backslash, and is a fixed
//! point (canonicalizing it again changes nothing, so a path is never judged under one form and
//! served under another); a protected pattern matches it whenever it matches the lower-cased
//! path (case-insensitive), and matching never panics for any pattern.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::matching::{canonicalize, CaseMode, PatternSet, PatternSpec};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (pattern, raw) = match text.split_once('\n') {
        Some((p, r)) => (p.to_string(), r.to_string()),
        None => ("/api/*".to_string(), text.to_string()),
    };
    let Ok(canonical) = canonicalize(&raw) else {
        return;
    };
    assert!(canonical.starts_with('/'), "{raw:?} -> {canonical:?}");
    let again = canonicalize(&canonical);
    assert_eq!(
        again.as_deref(),
        Ok(canonical.as_str()),
        "{raw:?} is not a fixed point"
    );
    let body = canonical.strip_suffix('/').unwrap_or(&canonical);
    for seg in body.split('/').skip(1) {
        assert!(
            !seg.is_empty() || body.is_empty(),
            "{raw:?} -> {canonical:?}: empty segment"
        );
        assert!(
            seg != "." && seg != "..",
            "{raw:?} -> {canonical:?}: dot segment"
        );
    }
    let lower = canonical.to_ascii_lowercase();
    for bad in ["\0", "\\", "%2f", "%5c", "%00", "%2e"] {
        assert!(
            !lower.contains(bad),
            "{raw:?} -> {canonical:?} holds {bad:?}"
        );
    }
    for mode in [CaseMode::Insensitive, CaseMode::Sensitive] {
        for spec in [
            PatternSpec::path(pattern.clone()),
            PatternSpec::regex(pattern.clone()),
        ] {
            if let Ok(set) = PatternSet::compile(&[spec], mode) {
                let hit = set.is_match("GET", &canonical);
                if mode == CaseMode::Insensitive {
                    assert_eq!(
                        hit,
                        set.is_match("GET", &canonical.to_ascii_uppercase()),
                        "case folding"
                    );
                }
            }
        }
    }
});
