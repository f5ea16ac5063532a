//! Just enough DER and PEM to read public keys: SubjectPublicKeyInfo (RFC 5280), PKCS#1
//! RSAPublicKey (RFC 8017) and the SPKI inside an X.509 certificate. Only definite, minimally
//! encoded lengths and single-byte tags are accepted.

use super::b64;
use super::error::KeyError;
use super::key::Curve;

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
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

/// One PEM block: its label and decoded body.
pub(super) struct Pem {
    pub(super) label: String,
    pub(super) der: Vec<u8>,
}

/// Parses the first PEM block of `text`. Text before the block is ignored (as OpenSSL does);
/// encapsulated headers (e.g. encrypted keys) are refused.
pub(super) fn parse_pem(text: &str) -> Result<Pem, KeyError> {
    if text.len() > MAX_PEM_BYTES {
        return Err(KeyError::Pem("document is too large"));
    }
    const BEGIN: &str = "-----BEGIN ";
    const DASHES: &str = "-----";
    let start = text.find(BEGIN).ok_or(KeyError::Pem("no begin line"))?;
    let after_begin = &text[start + BEGIN.len()..];
    let label_end = after_begin
        .find(DASHES)
        .ok_or(KeyError::Pem("unterminated begin line"))?;
    let label = &after_begin[..label_end];
    if label.is_empty() || label.contains('\n') {
        return Err(KeyError::Pem("bad begin line"));
    }
    let body_and_rest = &after_begin[label_end + DASHES.len()..];
    let end_line = format!("-----END {label}-----");
    let body_end = body_and_rest
        .find(&end_line)
        .ok_or(KeyError::Pem("no matching end line"))?;
    let body: String = body_and_rest[..body_end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = b64::decode_standard(&body).ok_or(KeyError::Pem("body is not valid base64"))?;
    if der.is_empty() {
        return Err(KeyError::Pem("empty body"));
    }
    Ok(Pem {
        label: label.to_owned(),
        der,
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
        assert!(parse_pem("no pem here").is_err());
        assert!(parse_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err());
        assert!(parse_pem("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----").is_err());
        let pem = parse_pem("junk\n-----BEGIN X-----\r\nAAEC\r\n-----END X-----\n").ok();
        assert_eq!(
            pem.map(|p| (p.label, p.der)),
            Some(("X".to_owned(), vec![0, 1, 2]))
        );
    }
}
