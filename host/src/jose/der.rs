//! Just enough DER to read keys: SubjectPublicKeyInfo (RFC 5280), PKCS#1 RSAPublicKey (RFC 8017),
//! the SPKI inside an X.509 certificate, and the RSAPrivateKey inside a PKCS#8 PrivateKeyInfo
//! (RFC 5208). Only definite, minimally encoded lengths and single-byte tags are accepted.
//!
//! PEM armour is read by `rustls-pki-types` (as the TLS listener reads its files): [`read_pem`]
//! hands its DER to the parsers here.

use rustls_pki_types::pem::{self, PemObject as _, SectionKind};

use super::alg::Curve;
use super::error::KeyError;

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_CONTEXT_0: u8 = 0xa0;

const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// Largest PEM document accepted (a certificate chain entry is a few KiB).
const MAX_PEM_BYTES: usize = 64 * 1024;

/// A public key read from DER, not yet validated by aws-lc-rs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PublicKeyInfo {
    /// Modulus and exponent, big-endian, leading zeros removed.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed point `04 ‖ x ‖ y`.
    Ec { curve: Curve, point: Vec<u8> },
    /// The 32-byte public key.
    Ed25519(Vec<u8>),
}

fn bad(why: &'static str) -> KeyError {
    KeyError::Malformed(why)
}

/// A cursor over DER bytes.
pub(super) struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Der { rest: data }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Reads one TLV and returns its tag and content.
    pub(super) fn read_any(&mut self) -> Result<(u8, &'a [u8]), KeyError> {
        let (&tag, rest) = self.rest.split_first().ok_or(bad("truncated der"))?;
        if tag & 0x1f == 0x1f {
            return Err(bad("multi-byte der tags are not supported"));
        }
        let (&first, mut rest) = rest.split_first().ok_or(bad("truncated der"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return Err(bad("unsupported der length"));
            }
            if rest.len() < count {
                return Err(bad("truncated der"));
            }
            let (len_bytes, after) = rest.split_at(count);
            rest = after;
            if len_bytes[0] == 0 {
                return Err(bad("non-minimal der length"));
            }
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 {
                return Err(bad("non-minimal der length"));
            }
            len
        };
        if rest.len() < len {
            return Err(bad("truncated der"));
        }
        let (content, after) = rest.split_at(len);
        self.rest = after;
        Ok((tag, content))
    }

    /// Reads one TLV that must have tag `tag`.
    pub(super) fn read(&mut self, tag: u8) -> Result<&'a [u8], KeyError> {
        let (got, content) = self.read_any()?;
        if got != tag {
            return Err(bad("unexpected der tag"));
        }
        Ok(content)
    }

    /// Peeks at the next tag.
    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn finish(&self) -> Result<(), KeyError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(bad("trailing data in der"))
        }
    }
}

/// Reads a DER value that must be exactly one TLV with tag `tag`.
fn single(data: &[u8], tag: u8) -> Result<&[u8], KeyError> {
    let mut der = Der::new(data);
    let content = der.read(tag)?;
    der.finish()?;
    Ok(content)
}

/// A non-negative INTEGER's magnitude, big-endian, without leading zeros.
fn unsigned_integer(content: &[u8]) -> Result<Vec<u8>, KeyError> {
    match content {
        [] => Err(bad("empty der integer")),
        [first, ..] if first & 0x80 != 0 => Err(bad("negative der integer")),
        [0, second, ..] if second & 0x80 == 0 => Err(bad("non-minimal der integer")),
        _ => {
            let start = content
                .iter()
                .position(|&b| b != 0)
                .unwrap_or(content.len());
            Ok(content[start..].to_vec())
        }
    }
}

/// Parses a PKCS#1 `RSAPublicKey` (a SEQUENCE of modulus and exponent).
pub(super) fn parse_pkcs1_rsa_public_key(der: &[u8]) -> Result<PublicKeyInfo, KeyError> {
    let mut seq = Der::new(single(der, TAG_SEQUENCE)?);
    let n = unsigned_integer(seq.read(TAG_INTEGER)?)?;
    let e = unsigned_integer(seq.read(TAG_INTEGER)?)?;
    seq.finish()?;
    Ok(PublicKeyInfo::Rsa { n, e })
}

/// Parses a DER `SubjectPublicKeyInfo`.
pub(super) fn parse_spki(der: &[u8]) -> Result<PublicKeyInfo, KeyError> {
    parse_spki_content(single(der, TAG_SEQUENCE)?)
}

fn parse_spki_content(content: &[u8]) -> Result<PublicKeyInfo, KeyError> {
    let mut spki = Der::new(content);
    let mut alg = Der::new(spki.read(TAG_SEQUENCE)?);
    let key_bits = spki.read(TAG_BIT_STRING)?;
    spki.finish()?;
    let key = match key_bits.split_first() {
        Some((0, key)) => key,
        _ => return Err(bad("subject public key bit string has unused bits")),
    };
    let oid = alg.read(TAG_OID)?;
    if oid == OID_RSA_ENCRYPTION {
        // Parameters must be NULL (RFC 3279); tolerate their absence.
        if !alg.is_empty() && !alg.read(TAG_NULL)?.is_empty() {
            return Err(bad("rsa algorithm parameters are not null"));
        }
        alg.finish()?;
        parse_pkcs1_rsa_public_key(key)
    } else if oid == OID_EC_PUBLIC_KEY {
        let curve_oid = alg.read(TAG_OID)?;
        alg.finish()?;
        let curve = if curve_oid == OID_P256 {
            Curve::P256
        } else if curve_oid == OID_P384 {
            Curve::P384
        } else if curve_oid == OID_P521 {
            Curve::P521
        } else {
            return Err(KeyError::UnsupportedCurve);
        };
        if key.len() != 1 + 2 * curve.field_len() || key[0] != 0x04 {
            return Err(bad(
                "ec public key is not an uncompressed point of the curve",
            ));
        }
        Ok(PublicKeyInfo::Ec {
            curve,
            point: key.to_vec(),
        })
    } else if oid == OID_ED25519 {
        // RFC 8410: parameters MUST be absent.
        alg.finish()?;
        if key.len() != 32 {
            return Err(bad("ed25519 public key is not 32 bytes"));
        }
        Ok(PublicKeyInfo::Ed25519(key.to_vec()))
    } else {
        Err(KeyError::UnsupportedKeyType)
    }
}

/// Extracts and parses the `subjectPublicKeyInfo` of a DER X.509 certificate. The certificate
/// is not validated in any other way (no chain, dates or signature): it is only a key carrier.
pub(super) fn parse_certificate_spki(der: &[u8]) -> Result<PublicKeyInfo, KeyError> {
    let mut cert = Der::new(single(der, TAG_SEQUENCE)?);
    let mut tbs = Der::new(cert.read(TAG_SEQUENCE)?);
    if tbs.peek_tag() == Some(TAG_CONTEXT_0) {
        tbs.read(TAG_CONTEXT_0)?; // version
    }
    tbs.read(TAG_INTEGER)?; // serialNumber
    tbs.read(TAG_SEQUENCE)?; // signature
    tbs.read(TAG_SEQUENCE)?; // issuer
    tbs.read(TAG_SEQUENCE)?; // validity
    tbs.read(TAG_SEQUENCE)?; // subject
    parse_spki_content(tbs.read(TAG_SEQUENCE)?)
}

/// Reads the `privateKey` of a PKCS#8 `PrivateKeyInfo` (RFC 5208) that holds an RSA key: the
/// PKCS#1 `RSAPrivateKey` DER inside it, not yet validated. Anything but an RSA key is refused.
pub(super) fn pkcs8_rsa_private_key(der: &[u8]) -> Result<&[u8], KeyError> {
    let mut info = Der::new(single(der, TAG_SEQUENCE)?);
    info.read(TAG_INTEGER)?; // version: v1 (0) or, with a public key attached, v2 (1)
    let mut alg = Der::new(info.read(TAG_SEQUENCE)?);
    if alg.read(TAG_OID)? != OID_RSA_ENCRYPTION {
        return Err(KeyError::UnsupportedKeyType);
    }
    // Attributes and the v2 public key may follow; they are not needed.
    info.read(TAG_OCTET_STRING)
}

/// Reads the first PEM block of a kind `rustls-pki-types` knows (`PUBLIC KEY`, `CERTIFICATE`,
/// `PRIVATE KEY`, `RSA PRIVATE KEY`, ...): its kind and DER, or `None` when there is none. Blocks
/// of other kinds, and text before and between blocks, are skipped. Errors are fixed reasons: the
/// reader's own messages can quote the input, which may be a private key.
pub(super) fn read_pem(text: &str) -> Result<Option<(SectionKind, Vec<u8>)>, KeyError> {
    if text.len() > MAX_PEM_BYTES {
        return Err(KeyError::Pem("document is too large"));
    }
    let (kind, der) = match <(SectionKind, Vec<u8>)>::from_pem_slice(text.as_bytes()) {
        Ok(block) => block,
        Err(pem::Error::NoItemsFound) => return Ok(None),
        Err(e) => {
            return Err(KeyError::Pem(match e {
                pem::Error::MissingSectionEnd { .. } => "no matching end line",
                pem::Error::IllegalSectionStart { .. } => "bad begin line",
                pem::Error::Base64Decode(_) => "body is not valid base64",
                pem::Error::SectionTooLarge => "document is too large",
                _ => "unreadable document",
            }))
        }
    };
    if der.is_empty() {
        return Err(KeyError::Pem("empty body"));
    }
    Ok(Some((kind, der)))
}

/// Reads the first `RSA PUBLIC KEY` (PKCS#1) block. `rustls-pki-types` does not know that label
/// and skips such blocks, so the block is read under the `PUBLIC KEY` label instead. Call it only
/// for a document in which [`read_pem`] found no block at all: the block it then finds can only be
/// a renamed one.
pub(super) fn read_pkcs1_public_pem(text: &str) -> Result<Option<Vec<u8>>, KeyError> {
    let renamed = text.replace(" RSA PUBLIC KEY-----", " PUBLIC KEY-----");
    Ok(match read_pem(&renamed)? {
        Some((SectionKind::PublicKey, der)) => Some(der),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_must_be_definite_and_minimal() {
        // Indefinite length.
        assert!(Der::new(&[0x30, 0x80, 0x00, 0x00]).read_any().is_err());
        // Long form for a short length.
        assert!(Der::new(&[0x04, 0x81, 0x01, 0xff]).read_any().is_err());
        // Leading zero in the long form.
        assert!(Der::new(&[0x04, 0x82, 0x00, 0x80]).read_any().is_err());
        // Truncated.
        assert!(Der::new(&[0x04, 0x05, 0x01]).read_any().is_err());
        let mut ok = Der::new(&[0x04, 0x01, 0xff]);
        assert_eq!(ok.read_any().ok(), Some((0x04, &[0xff][..])));
        assert!(ok.is_empty());
    }

    #[test]
    fn integers_are_non_negative_and_minimal() {
        assert_eq!(unsigned_integer(&[0x00, 0x80]).ok(), Some(vec![0x80]));
        assert!(unsigned_integer(&[0x80]).is_err());
        assert!(unsigned_integer(&[0x00, 0x01]).is_err());
        assert!(unsigned_integer(&[]).is_err());
    }

    #[test]
    fn pem_needs_matching_armour() {
        let reason = |text: &str| match read_pem(text) {
            Err(KeyError::Pem(why)) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(read_pem("no pem here").ok(), Some(None));
        assert_eq!(
            reason("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PRIVATE KEY-----"),
            "no matching end line"
        );
        assert_eq!(
            reason("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----"),
            "body is not valid base64"
        );
        assert_eq!(
            reason("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----"),
            "empty body"
        );
        assert_eq!(
            reason(&"A".repeat(MAX_PEM_BYTES + 1)),
            "document is too large"
        );
        // Text before the block is skipped, and so are blocks of kinds the reader does not know.
        let pem = read_pem(
            "junk\n-----BEGIN X-----\nAAAA\n-----END X-----\n-----BEGIN PUBLIC KEY-----\r\nAAEC\r\n-----END PUBLIC KEY-----\n",
        )
        .ok();
        assert_eq!(pem, Some(Some((SectionKind::PublicKey, vec![0, 1, 2]))));
        // A PKCS#1 public key's label is known through its renaming only.
        let pkcs1 = "-----BEGIN RSA PUBLIC KEY-----\nAAEC\n-----END RSA PUBLIC KEY-----\n";
        assert_eq!(read_pem(pkcs1).ok(), Some(None));
        assert_eq!(read_pkcs1_public_pem(pkcs1).ok(), Some(Some(vec![0, 1, 2])));
    }

    #[test]
    fn pem_errors_never_quote_the_document() {
        for text in [
            "-----BEGIN PRIVATE KEY-----\nsecret-body!\n-----END PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY secret-label\nAAAA\n",
            "-----BEGIN PRIVATE KEY-----\nsecret-body\n",
        ] {
            let err = read_pem(text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.starts_with("malformed pem: "), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }
}
