#![allow(clippy::unwrap_used)]
//! criterion benches of the auth hot path (issue #6):
//! * `boundary/*`: one `authenticate` through the plugin ABI (the `jwt` plugin's provider behind
//!   `Provider_TO`, its verifier behind `JwtVerifier_TO`) vs the host verifier called directly.
//!   The token is the same every time, so both answer from the verifier's accepted-token memory:
//!   what is left is the price of the boundary.
//! * `rules/*`: the route policy (path match + rule evaluation) with 10, 100 and 1,000 rules.
//! * `verify/*`: a full verification per algorithm, no memory (`jose::verify`).
//!
//! `cargo bench -p portcullis-tests --bench auth` (add a filter: `-- rules`).

use std::{hint::black_box, path::Path, sync::Arc, sync::OnceLock, time::Instant};

use aws_lc_rs::{encoding::AsDer, signature::KeyPair as _};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use poem::http::HeaderMap;
use portcullis::{
    auth::{AuthUser, RequestParts},
    config::{compile_str, EnvVars},
    jose::{self, Algorithm, Key, Validation},
    keys::HttpClient,
    keys::{KeyCache, KeyCacheSettings},
    plugin::{InstanceServices, SharedServices},
};
use portcullis_plugin_api::{
    abi::{abi_stable::std_types::RString, host_box, provider_box, RequestInfo},
    Host, JwtVerifierSpec, Plugin,
};
use portcullis_plugin_jwt::JwtPlugin;
use portcullis_tests::{now, pem_block};
use serde_json::json;

fn claims() -> serde_json::Value {
    json!({"iss": "https://bench.test", "aud": "api", "sub": "bench", "role": "admin",
           "iat": now(), "exp": now() + 3600})
}

fn services() -> InstanceServices {
    let http = HttpClient::new().unwrap();
    let shared = Arc::new(SharedServices {
        http: http.clone(),
        keys: Arc::new(KeyCache::new(http, KeyCacheSettings::default())),
        max_response_bytes: 1 << 20,
        http_timeout: std::time::Duration::from_secs(5),
    });
    InstanceServices::new(shared, "bench", false, 16 * 1024)
}

fn boundary(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let enc = jsonwebtoken::EncodingKey::from_rsa_pem(
        pem_block("PRIVATE KEY", rsa.as_der().unwrap().as_ref()).as_bytes(),
    )
    .unwrap();
    let public_pem = pem_block("PUBLIC KEY", rsa.public_key().as_der().unwrap().as_ref());
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims(),
        &enc,
    )
    .unwrap();
    let spec = JwtVerifierSpec {
        algorithms: vec!["RS256".into()],
        public_keys: vec![public_pem],
        issuer: vec!["https://bench.test".into()],
        audience: vec!["api".into()],
        ..JwtVerifierSpec::default()
    };
    let direct = services()
        .verifier(&serde_json::to_string(&spec).unwrap())
        .unwrap();
    let provider = {
        let host = Host::from_abi(host_box(services()));
        // The plugin's config has the spec's keys.
        let config = serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
        provider_box(JwtPlugin::build(config, host).unwrap())
    };
    let info = RequestInfo {
        method: "GET".into(),
        path: "/health".into(),
        headers: vec![portcullis_plugin_api::abi::abi_stable::std_types::Tuple2(
            RString::from("host"),
            RString::from("127.0.0.1"),
        )]
        .into(),
    };
    let mut g = c.benchmark_group("boundary");
    g.bench_function("direct_verify", |b| {
        b.iter(|| rt.block_on(direct.verify_token(black_box(&token))).unwrap())
    });
    g.bench_function("plugin_authenticate", |b| {
        b.iter(|| {
            rt.block_on(
                provider.authenticate(RString::from(black_box(token.as_str())), info.clone()),
            )
            .unwrap()
        })
    });
    g.finish();
}

fn rules(c: &mut Criterion) {
    let dev = || Err("no development secret in benchmarks".to_string());
    let vars = EnvVars { dev_secret: &dev };
    let mut g = c.benchmark_group("rules");
    for n in [10usize, 100, 1000] {
        let mut yaml = String::from(
            "version: 1\nplugins:\n  dir: plugins\nauth:\n  protected: [\"/api/*\"]\n  rules:\n",
        );
        // Half the rules with a CEL condition, half path-only; the request hits the last ones.
        for i in 0..n {
            if i % 2 == 0 {
                yaml.push_str(&format!(
                    "    - path: /api/r{i}/*\n      condition: \"user.role == 'admin'\"\n      allow: true\n"
                ));
            } else {
                yaml.push_str(&format!(
                    "    - path: /api/r{i}/items/*\n      methods: [GET]\n      allow: true\n"
                ));
            }
        }
        let config = compile_str(&yaml, Path::new("bench.yaml"), &vars).unwrap();
        let user = AuthUser::new("bench".into(), claims());
        let path = format!("/api/r{}/items/7", n - 1);
        let cond_path = format!("/api/r{}/x", n - 2);
        g.bench_with_input(BenchmarkId::new("path_rule", n), &n, |b, _| {
            b.iter(|| {
                let cel = OnceLock::new();
                let headers = HeaderMap::new();
                let req = RequestParts {
                    method: "GET",
                    path: black_box(&path),
                    headers: &headers,
                    query: None,
                    host: None,
                    now: Instant::now(),
                };
                let (r, rule) = portcullis::auth::route_policy(&config.auth, &req, &user, &cel);
                assert!(r.is_ok() && rule.is_some());
            })
        });
        g.bench_with_input(BenchmarkId::new("cel_rule", n), &n, |b, _| {
            b.iter(|| {
                let cel = OnceLock::new();
                let headers = HeaderMap::new();
                let req = RequestParts {
                    method: "GET",
                    path: black_box(&cond_path),
                    headers: &headers,
                    query: None,
                    host: None,
                    now: Instant::now(),
                };
                let (r, rule) = portcullis::auth::route_policy(&config.auth, &req, &user, &cel);
                assert!(r.is_ok() && rule.is_some());
            })
        });
    }
    g.finish();
}

fn verify(c: &mut Criterion) {
    let claims = claims();
    let mut cases: Vec<(&str, String, Key)> = Vec::new();
    // HS256
    let secret = b"bench-secret-0123456789abcdefghijklmnopqrstuvwxyz";
    cases.push((
        "HS256",
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
        .unwrap(),
        Key::hmac(secret).unwrap(),
    ));
    // RSA: RS256 and PS256 with one 2048-bit key.
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let rsa_pem = pem_block("PRIVATE KEY", rsa.as_der().unwrap().as_ref());
    let rsa_enc = jsonwebtoken::EncodingKey::from_rsa_pem(rsa_pem.as_bytes()).unwrap();
    let rsa_pub = Key::from_spki_der(rsa.public_key().as_der().unwrap().as_ref()).unwrap();
    for (name, alg) in [
        ("RS256", jsonwebtoken::Algorithm::RS256),
        ("PS256", jsonwebtoken::Algorithm::PS256),
    ] {
        let t = jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &rsa_enc).unwrap();
        cases.push((name, t, rsa_pub.clone()));
    }
    // ECDSA P-256 and P-384.
    for (name, signing, alg) in [
        (
            "ES256",
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            jsonwebtoken::Algorithm::ES256,
        ),
        (
            "ES384",
            &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            jsonwebtoken::Algorithm::ES384,
        ),
    ] {
        let kp = aws_lc_rs::signature::EcdsaKeyPair::generate(signing).unwrap();
        let pkcs8 = kp.to_pkcs8v1().unwrap();
        let enc = jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref());
        let t = jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &enc).unwrap();
        let public = Key::from_spki_der(kp.public_key().as_der().unwrap().as_ref()).unwrap();
        cases.push((name, t, public));
    }
    // Ed25519.
    let ed = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
    let ed_enc = jsonwebtoken::EncodingKey::from_ed_der(ed.to_pkcs8().unwrap().as_ref());
    let t = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims,
        &ed_enc,
    )
    .unwrap();
    let ed_pub = Key::from_spki_der(ed.public_key().as_der().unwrap().as_ref()).unwrap();
    cases.push(("EdDSA", t, ed_pub));

    let mut g = c.benchmark_group("verify");
    for (name, token, key) in &cases {
        let validation = Validation {
            algorithms: vec![Algorithm::parse(name).unwrap()],
            issuer: Some(vec!["https://bench.test".into()]),
            audience: Some(vec!["api".into()]),
            ..Validation::default()
        };
        let keys = [key.clone()];
        assert!(
            jose::verify(token, &keys, &validation, now()).is_ok(),
            "{name}"
        );
        g.bench_function(*name, |b| {
            b.iter(|| jose::verify(black_box(token), &keys, &validation, now()).unwrap())
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = boundary, rules, verify
}
criterion_main!(benches);
