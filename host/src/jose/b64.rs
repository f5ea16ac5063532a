//! Strict base64url (RFC 7515 §2 and Appendix C): URL-safe alphabet, no padding, no
//! whitespace or other characters, and canonical trailing bits.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

const STRICT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Why a base64url string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum B64Error {
    /// A byte outside `A-Z a-z 0-9 - _` (this includes `=`, whitespace, `+` and `/`).
    BadCharacter,
    /// A length of 1 mod 4, or non-zero unused bits in the last character.
    NonCanonical,
}

/// Decodes strict base64url without padding.
pub(super) fn decode(input: &str) -> Result<Vec<u8>, B64Error> {
    // The engine rejects all of this too; checking first gives a precise reason. Written without
    // early exits so that the compiler checks many bytes at once (every token goes through here).
    let alphabet_only = input.bytes().fold(true, |ok, b| {
        ok & (b.is_ascii_alphanumeric() | (b == b'-') | (b == b'_'))
    });
    if !alphabet_only {
        return Err(B64Error::BadCharacter);
    }
    STRICT_URL_SAFE
        .decode(input)
        .map_err(|_| B64Error::NonCanonical)
}

/// Encodes base64url without padding.
#[cfg(test)]
pub(super) fn encode(input: &[u8]) -> String {
    STRICT_URL_SAFE.encode(input)
}
