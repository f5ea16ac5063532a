//! Helper of `bench/run.sh` (not a test): keeps an RSA-2048 key, serves a local JWKS and a local
//! WorkOS (JWKS + organization memberships) on 127.0.0.1, and writes the tokens the load
//! scenarios send.
//!
//! `portcullis-bench mocks DIR [N]` writes into DIR:
//! * `public.pem` — the public key (for the static-key provider);
//! * `jwks_url`, `workos_base`, `workos_issuer` — the local servers;
//! * `token_static` (no `kid`), `token_jwks`, `token_workos` — one RS256 token each (role admin,
//!   valid for a day);
//! * `tokens.txt` — N distinct valid RS256 tokens, one a line (kept across runs while the key is
//!   the same and they have more than 6 hours left, since minting costs ~1 ms each);
//! * `ready` — written last; then it serves until killed.

use std::{path::Path, time::Duration};

use portcullis_tests::{
    b64,
    mock_workos::{MockWorkos, ORG_ID},
    now, pem_block, JwksServer,
};
use serde_json::{json, Value};

struct Key {
    encoding: jsonwebtoken::EncodingKey,
    jwk: Value,
    pem: String,
}

fn load_or_make_key(dir: &Path) -> anyhow::Result<Key> {
    use aws_lc_rs::{encoding::AsDer, rsa::KeySize, signature::KeyPair as _};
    let path = dir.join("private.pk8");
    let kp = match std::fs::read(&path) {
        Ok(der) => aws_lc_rs::rsa::KeyPair::from_pkcs8(&der)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        Err(_) => {
            let kp = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048)
                .map_err(|e| anyhow::anyhow!("rsa keygen: {e}"))?;
            let der = kp.as_der().map_err(|e| anyhow::anyhow!("pkcs8: {e}"))?;
            std::fs::write(&path, der.as_ref())?;
            // A new key invalidates every token minted with the old one.
            let _ = std::fs::remove_file(dir.join("tokens.txt"));
            kp
        }
    };
    let pkcs8 = kp.as_der().map_err(|e| anyhow::anyhow!("pkcs8: {e}"))?;
    let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(
        pem_block("PRIVATE KEY", pkcs8.as_ref()).as_bytes(),
    )?;
    let public = kp.public_key();
    let spki = public.as_der().map_err(|e| anyhow::anyhow!("spki: {e}"))?;
    let n = public.modulus().big_endian_without_leading_zero();
    let e = public.exponent().big_endian_without_leading_zero();
    Ok(Key {
        encoding,
        jwk: json!({ "kty": "RSA", "kid": "bench", "use": "sig", "alg": "RS256", "n": b64(n), "e": b64(e) }),
        pem: pem_block("PUBLIC KEY", spki.as_ref()),
    })
}

/// Signs with RS256; `kid` for key sets (a static PEM key has no `kid`, so its tokens carry none).
fn sign(key: &Key, claims: &Value, kid: bool) -> anyhow::Result<String> {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = kid.then(|| "bench".into());
    Ok(jsonwebtoken::encode(&h, claims, &key.encoding)?)
}

fn claims(iss: &str, sub: &str, exp: u64, jti: usize) -> Value {
    json!({
        "iss": iss, "aud": "api", "sub": sub, "role": "admin",
        "iat": now(), "exp": exp, "jti": format!("bench-{jti}"),
    })
}

/// Static-key and JWKS providers both accept this issuer.
const ISSUER: &str = "https://bench.portcullis.test";

fn mint_many(key: &Key, dir: &Path, n: usize) -> anyhow::Result<()> {
    let path = dir.join("tokens.txt");
    let meta = dir.join("tokens.exp");
    let fresh = std::fs::read_to_string(&meta)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|exp| exp > now() + 6 * 3600);
    let have = std::fs::read_to_string(&path)
        .map(|s| s.lines().count())
        .unwrap_or(0);
    if fresh && have == n {
        return Ok(());
    }
    let exp = now() + 24 * 3600;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = n.div_ceil(threads);
    let parts: Vec<anyhow::Result<Vec<String>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t * chunk..((t + 1) * chunk).min(n))
                        .map(|i| sign(key, &claims(ISSUER, &format!("user{i}"), exp, i), false))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("minting thread panicked")))
            })
            .collect()
    });
    let mut out = String::new();
    for p in parts {
        for t in p? {
            out.push_str(&t);
            out.push('\n');
        }
    }
    std::fs::write(&path, out)?;
    std::fs::write(&meta, exp.to_string())?;
    Ok(())
}

async fn mocks(dir: &Path, n: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let _ = std::fs::remove_file(dir.join("ready"));
    let key = load_or_make_key(dir)?;
    let jwks = JwksServer::start(vec![key.jwk.clone()]).await;
    let workos = MockWorkos::start(vec![key.jwk.clone()]).await;
    workos.set_roles("user_bench", &["admin"]);
    let exp = now() + 24 * 3600;
    std::fs::write(dir.join("public.pem"), &key.pem)?;
    std::fs::write(dir.join("jwks_url"), jwks.url())?;
    std::fs::write(dir.join("workos_base"), workos.base())?;
    std::fs::write(dir.join("workos_issuer"), workos.issuer())?;
    std::fs::write(
        dir.join("token_static"),
        sign(&key, &claims(ISSUER, "bench", exp, 0), false)?,
    )?;
    std::fs::write(
        dir.join("token_jwks"),
        sign(&key, &claims(ISSUER, "bench", exp, 0), true)?,
    )?;
    // The workos plugin authorizes within the organization the token names (`org_id`); the
    // mock's `set_roles` puts the membership in that organization.
    let mut workos_claims = claims(&workos.issuer(), "user_bench", exp, 0);
    workos_claims["org_id"] = ORG_ID.into();
    std::fs::write(dir.join("token_workos"), sign(&key, &workos_claims, true)?)?;
    mint_many(&key, dir, n)?;
    std::fs::write(dir.join("ready"), "ok")?;
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("mocks") => match args.get(2) {
            Some(dir) => {
                let n = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20_000);
                mocks(Path::new(dir), n).await
            }
            None => Err(anyhow::anyhow!("usage: portcullis-bench mocks DIR [N]")),
        },
        _ => Err(anyhow::anyhow!("usage: portcullis-bench mocks DIR [N]")),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
