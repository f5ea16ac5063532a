#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! SECURITY.md "Tokens", every class, through the running server: the `jwt` plugin with each key
//! type (HMAC secret, RSA, EC P-256 and Ed25519 PEM keys) and with a JWKS URL. Every forged or
//! invalid token is built here by hand; each gets 401 with the gate's own body (so the route
//! behind the gate, which would answer with the caller's claims, was not reached), no URL named
//! by a token is ever contacted, and the next valid token still gets 200.

use portcullis_tests::{forge::*, *};
use serde_json::{json, Value};

const ISS: &str = "https://issuer.test";

fn claims_ok(sub: &str) -> Value {
    good_claims(sub, json!({}))
}

fn with(mut c: Value, k: &str, v: Value) -> Value {
    if v.is_null() {
        c.as_object_mut().unwrap().remove(k);
    } else {
        c[k] = v;
    }
    c
}

/// A config for one `jwt` instance with `key_yaml` (lines indented six spaces).
fn config(key_yaml: &str, extra: &str) -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\nplugins:\n  dir: plugins\nproviders:\n  - name: main\n    plugin: jwt\n{extra}    config:\n{key_yaml}      issuer: [\"{ISS}\"]\n      audience: [\"api\"]\n      leeway_secs: 5\nauth:\n  rules:\n    - path: /api/*\n      allow: true\n"
    )
}

fn key_yaml(k: &TestKey) -> String {
    if k.alg == "HS256" {
        format!(
            "      secret: {}\n      algorithms: [HS256]\n",
            json!(k.pem)
        )
    } else {
        format!(
            "      public_keys: [{}]\n      algorithms: [{}]\n",
            json!(k.pem),
            k.alg
        )
    }
}

/// Every attack that applies to any key: `real` is the provider's key, `attacker` a key of the
/// same type the provider never trusted, `canary` a server no token may make us contact.
fn attacks(real: &TestKey, attacker: &TestKey, canary: &Canary) -> Vec<(String, String)> {
    let alg = real.alg;
    let good = claims_ok("alice").to_string();
    let header = real.header(json!({})).to_string();
    let mut v: Vec<(String, String)> = Vec::new();
    let mut add = |what: &str, token: String| v.push((what.to_string(), token));

    // 1. alg none, every spelling, with and without a signature.
    for none in ["none", "None", "NONE", "nOnE", "none ", ""] {
        let h = json!({"alg": none, "typ": "JWT"}).to_string();
        add(
            &format!("alg {none:?}, empty signature"),
            format!("{}.{}.", b64(h.as_bytes()), b64(good.as_bytes())),
        );
        add(
            &format!("alg {none:?}, signed by the real key"),
            real.sign_raw(&h, &good),
        );
    }
    add("no alg at all", real.sign_raw(r#"{"typ":"JWT"}"#, &good));
    add(
        "alg is a number",
        real.sign_raw(r#"{"alg":256,"typ":"JWT"}"#, &good),
    );
    add(
        "alg is a list",
        real.sign_raw(&json!({"alg": [alg]}).to_string(), &good),
    );
    add(
        "alg in another case",
        real.sign_raw(&json!({"alg": alg.to_lowercase()}).to_string(), &good),
    );

    // 2. Algorithm confusion: HS256 keyed with every public form of the real key.
    let hs = json!({"alg": "HS256", "typ": "JWT"}).to_string();
    if alg != "HS256" {
        add(
            "HS256 keyed with the PEM",
            hmac_token(real.pem.as_bytes(), &hs, &good),
        );
        add(
            "HS256 keyed with the PEM, no final newline",
            hmac_token(real.pem.trim_end().as_bytes(), &hs, &good),
        );
        add(
            "HS256 keyed with the SPKI DER",
            hmac_token(&real.der, &hs, &good),
        );
        add(
            "HS256 keyed with the JWK JSON",
            hmac_token(real.jwk.to_string().as_bytes(), &hs, &good),
        );
        for (m, label) in [("n", "RSA modulus"), ("x", "public x")] {
            if let Some(s) = real.jwk[m].as_str() {
                add(
                    &format!("HS256 keyed with the {label}"),
                    hmac_token(s.as_bytes(), &hs, &good),
                );
            }
        }
        for other in ["HS384", "HS512"] {
            let h = json!({"alg": other}).to_string();
            add(
                &format!("{other} keyed with the PEM"),
                hmac_token(real.pem.as_bytes(), &h, &good),
            );
        }
    } else {
        // The other way round: an asymmetric token for an HMAC provider.
        add(
            "RS256 by an attacker's key",
            TestKey::rsa("x").sign(json!({}), &claims_ok("alice")),
        );
    }

    // 3. Injected keys: the attacker's key embedded or named by URL, signed by the attacker.
    let ajwk = attacker.jwk.clone();
    add(
        "jwk header with the attacker's key",
        attacker.sign(json!({"jwk": ajwk}), &claims_ok("alice")),
    );
    add(
        "jku header to a local server",
        attacker.sign(
            json!({"jku": canary.url("/jwks"), "kid": "a"}),
            &claims_ok("alice"),
        ),
    );
    add(
        "x5u header to a local server",
        attacker.sign(json!({"x5u": canary.url("/cert.pem")}), &claims_ok("alice")),
    );
    add(
        "x5c header with a certificate",
        attacker.sign(json!({"x5c": [b64(&attacker.der)]}), &claims_ok("alice")),
    );
    add(
        "jku and jwk together, signed by the attacker",
        attacker.sign(
            json!({"jku": canary.url("/"), "jwk": attacker.jwk}),
            &claims_ok("alice"),
        ),
    );

    // 4. kid payloads: a path to an empty file with an empty HMAC key, SQL, a huge one.
    for kid in [
        "../../../../../../dev/null",
        "/dev/null",
        "../../etc/passwd\u{0}",
    ] {
        let h = json!({"alg": "HS256", "kid": kid}).to_string();
        add(
            &format!("kid {kid:?} with an empty HMAC key"),
            hmac_token(b"", &h, &good),
        );
    }
    let sql = "x' UNION SELECT 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' -- ";
    add(
        "kid SQL injection, HMAC keyed with the injected value",
        hmac_token(
            b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            &json!({"alg": "HS256", "kid": sql}).to_string(),
            &good,
        ),
    );
    add(
        "kid SQL injection, signed by the attacker",
        attacker.sign(json!({"kid": sql}), &claims_ok("alice")),
    );
    add(
        "kid of 600 bytes, signed by the real key",
        real.sign(json!({"kid": "k".repeat(600)}), &claims_ok("alice")),
    );
    add(
        "kid is an object",
        real.sign(json!({"kid": {"$ne": null}}), &claims_ok("alice")),
    );

    // 6. Null, empty, zero, truncated, flipped signatures.
    let input = format!("{}.{}", b64(header.as_bytes()), b64(good.as_bytes()));
    let sig = real.signature(input.as_bytes());
    add("empty signature", format!("{input}."));
    add(
        "zero signature, right length",
        format!("{input}.{}", b64(&vec![0; sig.len()])),
    );
    add("one zero byte", format!("{input}.{}", b64(&[0])));
    add(
        "signature truncated",
        format!("{input}.{}", b64(&sig[..sig.len() - 1])),
    );
    let mut flipped = sig.clone();
    flipped[sig.len() / 2] ^= 1;
    add(
        "signature with one bit flipped",
        format!("{input}.{}", b64(&flipped)),
    );
    let mut longer = sig.clone();
    longer.push(0);
    add(
        "signature with a byte appended",
        format!("{input}.{}", b64(&longer)),
    );
    add(
        "signature of another payload",
        format!(
            "{}.{}.{}",
            b64(header.as_bytes()),
            b64(claims_ok("mallory").to_string().as_bytes()),
            b64(&sig)
        ),
    );
    add(
        "signed by a key the provider never trusted",
        attacker.sign(json!({}), &claims_ok("alice")),
    );

    // 7. ECDSA: psychic signatures and DER (any key type: none of them may pass).
    let es = json!({"alg": "ES256"}).to_string();
    add(
        "ES256 psychic signature r=s=0",
        with_signature(&es, &good, &[0; 64]),
    );
    add("ES256 r=s=n (the group order)", {
        let n = hex_bytes("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
        with_signature(&es, &good, &[n.clone(), n].concat())
    });
    add(
        "ES256 DER-encoded zero signature",
        with_signature(
            &es,
            &good,
            &[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00],
        ),
    );
    if let Some(der) = real.der_signature(input.as_bytes()) {
        add(
            "DER-encoded ECDSA signature by the real key",
            format!("{input}.{}", b64(&der)),
        );
    }

    // 8. Time claims (leeway is 5 s in this config).
    let now = now() as i64;
    add(
        "exp missing",
        real.sign(json!({}), &with(claims_ok("a"), "exp", Value::Null)),
    );
    add(
        "exp past",
        real.sign(json!({}), &with(claims_ok("a"), "exp", json!(now - 60))),
    );
    add(
        "exp just past the leeway",
        real.sign(json!({}), &with(claims_ok("a"), "exp", json!(now - 30))),
    );
    add(
        "exp as a string",
        real.sign(
            json!({}),
            &with(claims_ok("a"), "exp", json!((now + 3600).to_string())),
        ),
    );
    add(
        "exp is null-ish zero",
        real.sign(json!({}), &with(claims_ok("a"), "exp", json!(0))),
    );
    add(
        "nbf in the future",
        real.sign(json!({}), &with(claims_ok("a"), "nbf", json!(now + 600))),
    );
    add(
        "iat far in the future",
        real.sign(json!({}), &with(claims_ok("a"), "iat", json!(now + 86_400))),
    );

    // 9. Issuer and audience.
    add(
        "wrong iss",
        real.sign(
            json!({}),
            &with(claims_ok("a"), "iss", json!("https://evil.test")),
        ),
    );
    add(
        "iss with a trailing slash",
        real.sign(
            json!({}),
            &with(claims_ok("a"), "iss", json!(format!("{ISS}/"))),
        ),
    );
    add(
        "iss missing",
        real.sign(json!({}), &with(claims_ok("a"), "iss", Value::Null)),
    );
    add(
        "iss as a list",
        real.sign(json!({}), &with(claims_ok("a"), "iss", json!([ISS]))),
    );
    add(
        "aud missing",
        real.sign(json!({}), &with(claims_ok("a"), "aud", Value::Null)),
    );
    add(
        "wrong aud",
        real.sign(json!({}), &with(claims_ok("a"), "aud", json!("other"))),
    );
    add(
        "aud list without ours",
        real.sign(json!({}), &with(claims_ok("a"), "aud", json!(["x", "y"]))),
    );
    add(
        "aud in another case",
        real.sign(json!({}), &with(claims_ok("a"), "aud", json!("API"))),
    );

    // 11. crit and duplicate members.
    add(
        "crit naming exp",
        real.sign(json!({"crit": ["exp"], "exp": now + 60}), &claims_ok("a")),
    );
    add(
        "crit b64=false",
        real.sign(json!({"crit": ["b64"], "b64": false}), &claims_ok("a")),
    );
    add(
        "crit empty list",
        real.sign(json!({"crit": []}), &claims_ok("a")),
    );
    add(
        "duplicate alg in the header",
        real.sign_raw(&format!(r#"{{"alg":"{alg}","alg":"none"}}"#), &good),
    );
    add(
        "duplicate alg, ours last",
        real.sign_raw(&format!(r#"{{"alg":"none","alg":"{alg}"}}"#), &good),
    );
    let c = claims_ok("alice");
    let dup_sub = format!(
        r#"{{"sub":"alice","sub":"admin","iss":"{ISS}","aud":"api","exp":{},"iat":{}}}"#,
        c["exp"], c["iat"]
    );
    add(
        "duplicate sub in the payload",
        real.sign_raw(&header, &dup_sub),
    );
    let dup_nested = format!(
        r#"{{"sub":"alice","iss":"{ISS}","aud":"api","exp":{},"org":{{"role":"user","role":"admin"}}}}"#,
        c["exp"]
    );
    add(
        "duplicate member nested in the payload",
        real.sign_raw(&header, &dup_nested),
    );
    let dup_escaped = format!(
        r#"{{"sub":"alice","s\u0075b":"admin","iss":"{ISS}","aud":"api","exp":{}}}"#,
        c["exp"]
    );
    add(
        "duplicate member spelled with an escape",
        real.sign_raw(&header, &dup_escaped),
    );

    // 12. Oversized and hostile.
    add(
        "20 kB claim (over max_token_bytes)",
        real.sign(
            json!({}),
            &with(claims_ok("a"), "pad", json!("x".repeat(20_000))),
        ),
    );
    let mut deep = json!(1);
    for _ in 0..64 {
        deep = json!([deep]);
    }
    add(
        "payload nested 64 deep",
        real.sign(json!({}), &with(claims_ok("a"), "deep", deep)),
    );
    add(
        "header nested 64 deep",
        real.sign(
            json!({"x": (0..64).fold(json!(0), |a, _| json!({"a": a}))}),
            &claims_ok("a"),
        ),
    );
    add("payload is a JSON array", real.sign_raw(&header, "[1,2,3]"));
    add("payload is a string", real.sign_raw(&header, "\"alice\""));
    add("payload is not JSON", real.sign_raw(&header, "sub=alice"));
    add("payload is not UTF-8", {
        let input = format!(
            "{}.{}",
            b64(header.as_bytes()),
            b64(&[0xff, 0xfe, b'{', b'}'])
        );
        let s = real.signature(input.as_bytes());
        format!("{input}.{}", b64(&s))
    });
    add("header is not JSON", real.sign_raw("alg=none", &good));
    add(
        "header with a BOM",
        real.sign_raw(&format!("\u{feff}{header}"), &good),
    );
    add(
        "payload with trailing data",
        real.sign_raw(&header, &format!("{good} {{}}")),
    );

    // 13. Malformed compact serialization around a valid token.
    let valid = real.sign(json!({}), &claims_ok("alice"));
    let parts: Vec<&str> = valid.split('.').collect();
    add("two parts", format!("{}.{}", parts[0], parts[1]));
    add("four parts", format!("{valid}.{}", parts[2]));
    add(
        "five parts (JWE shape)",
        format!(
            "{}.{}.{}.{}.{}",
            parts[0], parts[1], parts[2], parts[1], parts[2]
        ),
    );
    add("empty header part", format!(".{}.{}", parts[1], parts[2]));
    add("empty payload part", format!("{}..{}", parts[0], parts[2]));
    add("padding on the signature", format!("{valid}=="));
    add(
        "padding on the header",
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
    );
    add(
        "standard base64 alphabet",
        valid.replace('-', "+").replace('_', "/")
            + if valid.contains(['-', '_']) { "" } else { "+" },
    );
    add("leading dot", format!(".{valid}"));
    add("trailing dot", format!("{valid}."));
    add(
        "tab inside",
        format!("{}.\t{}.{}", parts[0], parts[1], parts[2]),
    );
    add("percent-encoded", valid.replace('.', "%2E"));
    add(
        "JWE header",
        real.sign_raw(r#"{"alg":"dir","enc":"A128GCM"}"#, &good),
    );
    v
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

async fn me(s: &Server, token: &str) -> (u16, Value) {
    let r = client()
        .get(s.url("/api/auth/me"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Sends every attack, each followed by a valid token.
async fn run(
    s: &Server,
    cases: Vec<(String, String)>,
    valid: impl Fn() -> String,
    canaries: &[&Canary],
) {
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (what, token) in &cases {
        let (status, body) = me(s, token).await;
        if status != 401 || body != json!({"error": "Invalid or expired token"}) {
            failures.push(format!("{what}: {status} {body}"));
        }
        let (ok, body) = me(s, &valid()).await;
        assert_eq!(ok, 200, "valid token after `{what}`: {body}");
        assert_eq!(body["user"]["sub"], "alice");
    }
    assert!(failures.is_empty(), "not refused:\n{}", failures.join("\n"));
    for c in canaries {
        assert_eq!(c.hits(), 0, "a URL from a token was contacted");
    }
    let log = s.log();
    assert!(!log.contains("panicked"), "{log}");
}

async fn pem_provider(real: TestKey, attacker: TestKey) {
    let canary = Canary::start(json!({"keys": [attacker.jwk]}).to_string()).await;
    let s = Server::start(&config(&key_yaml(&real), ""), &[jwt_plugin()]);
    let cases = attacks(&real, &attacker, &canary);
    run(
        &s,
        cases,
        || real.sign(json!({}), &claims_ok("alice")),
        &[&canary],
    )
    .await;
}

#[tokio::test]
async fn hmac_provider_refuses_every_forgery() {
    pem_provider(
        TestKey::hmac(SECRET),
        TestKey::hmac("attacker-secret-0123456789abcdefghijklmnop"),
    )
    .await;
}

#[tokio::test]
async fn rsa_provider_refuses_every_forgery() {
    pem_provider(TestKey::rsa("k"), TestKey::rsa("k")).await;
}

#[tokio::test]
async fn ec_provider_refuses_every_forgery() {
    pem_provider(TestKey::ec("k"), TestKey::ec("k")).await;
}

#[tokio::test]
async fn ed25519_provider_refuses_every_forgery() {
    pem_provider(TestKey::ed25519("k"), TestKey::ed25519("k")).await;
}

/// A JWKS-backed provider holding an RSA and an EC key, with `typ: [at+jwt]` (RFC 9068 access
/// tokens): the attacks above against each key, plus kid and type confusion, and the key server
/// fetched once for the whole run.
#[tokio::test]
async fn jwks_provider_refuses_every_forgery_and_fetches_only_its_own_url() {
    let rsa = TestKey::rsa("rsa-1");
    let ec = TestKey::ec("ec-1");
    let jwks = JwksServer::start(vec![rsa.jwk.clone(), ec.jwk.clone()]).await;
    let cfg = config(
        &format!(
            "      jwks_url: \"{}\"\n      algorithms: [RS256, ES256]\n      typ: [at+jwt]\n",
            jwks.url()
        ),
        "    dangerous: { allow_http: true }\n",
    );
    let s = Server::start(&cfg, &[jwt_plugin()]);
    let (rsa, ec) = (
        rsa.with_base(json!({"kid": "rsa-1", "typ": "at+jwt"})),
        ec.with_base(json!({"kid": "ec-1", "typ": "at+jwt"})),
    );
    let at = |k: &TestKey, extra: Value, c: &Value| k.sign(extra, c);
    let valid = || at(&rsa, json!({}), &claims_ok("alice"));
    assert_eq!(me(&s, &valid()).await.0, 200);
    assert_eq!(
        me(&s, &at(&ec, json!({}), &claims_ok("alice"))).await.0,
        200
    );

    let attacker_rsa = TestKey::rsa("rsa-1").with_base(json!({"kid": "rsa-1", "typ": "at+jwt"}));
    let attacker_ec = TestKey::ec("ec-1").with_base(json!({"kid": "ec-1", "typ": "at+jwt"}));
    let canary = Canary::start(json!({"keys": [attacker_rsa.jwk]}).to_string()).await;
    let mut cases = Vec::new();
    for (real, attacker) in [(&rsa, &attacker_rsa), (&ec, &attacker_ec)] {
        // The generic attacks; signed headers carry the real kid and the access-token type.
        for (what, token) in attacks(real, attacker, &canary) {
            cases.push((format!("{} {what}", real.kind), token));
        }
    }
    let mut extra: Vec<(&str, String)> = vec![
        (
            "typ JWT (an ID token used as an access token)",
            rsa.sign(json!({"typ": "JWT"}), &claims_ok("a")),
        ),
        (
            "typ missing",
            rsa.sign_raw(
                r#"{"alg":"RS256","kid":"rsa-1"}"#,
                &claims_ok("a").to_string(),
            ),
        ),
        (
            "unknown kid",
            at(&rsa, json!({"kid": "nope"}), &claims_ok("a")),
        ),
        (
            "kid of the EC key on an RS256 token",
            at(&rsa, json!({"kid": "ec-1"}), &claims_ok("a")),
        ),
        (
            "kid of the RSA key on an ES256 token",
            at(&ec, json!({"kid": "rsa-1"}), &claims_ok("a")),
        ),
        (
            "HS256 keyed with the RSA JWK, kid of the RSA key",
            hmac_token(
                rsa.jwk.to_string().as_bytes(),
                &json!({"alg": "HS256", "kid": "rsa-1", "typ": "at+jwt"}).to_string(),
                &claims_ok("a").to_string(),
            ),
        ),
        (
            "HS256 keyed with the n of the RSA key",
            hmac_token(
                rsa.jwk["n"].as_str().unwrap().as_bytes(),
                &json!({"alg": "HS256", "kid": "rsa-1", "typ": "at+jwt"}).to_string(),
                &claims_ok("a").to_string(),
            ),
        ),
        (
            "kid path traversal to the key file",
            at(&attacker_rsa, json!({"kid": "../../jwks"}), &claims_ok("a")),
        ),
        (
            "jku to a local server with the attacker's kid",
            at(
                &attacker_rsa,
                json!({"jku": canary.url("/jwks"), "kid": "attacker"}),
                &claims_ok("a"),
            ),
        ),
        (
            "jku naming our own JWKS URL, attacker-signed",
            at(&attacker_rsa, json!({"jku": jwks.url()}), &claims_ok("a")),
        ),
    ];
    // PS256 with the RSA key's kid: the JWK's alg pins RS256.
    extra.push(("PS256 under an RS256-pinned JWK", {
        let h = json!({"alg": "PS256", "kid": "rsa-1", "typ": "at+jwt"}).to_string();
        rsa.sign_raw(&h, &claims_ok("a").to_string())
    }));
    for (w, t) in extra {
        cases.push((w.to_string(), t));
    }
    let fetched_before = jwks.hits();
    run(&s, cases, valid, &[&canary]).await;
    // Unknown kids may cause one refetch per rate-limit window, never one per token.
    assert!(
        jwks.hits() <= fetched_before + 2,
        "the key server was fetched {} times",
        jwks.hits() - fetched_before
    );
}
