//! Test harness: runs the real `portcullis` binary on `127.0.0.1:0` with real plugin `.so` files
//! copied into a private plugins folder, mints tokens, and serves identity-provider endpoints
//! locally.
//!
//! The binaries and plugins are built by the README's test command (`cargo build --workspace`
//! before the tests); a missing artifact fails the test loudly, never skips it.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;

pub mod echo;
pub mod forge;
pub mod mock;
pub mod mock_auth0;
pub mod mock_clerk;
pub mod mock_google;
pub mod mock_oidc;
pub mod mock_supabase;
pub mod mock_workos;
pub mod proxies;

/// `target/debug` (or whichever profile the tests were built with).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("target profile dir")
        .to_path_buf()
}

/// A built artifact, or a loud failure saying how to build it.
pub fn artifact(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` first (the README's test command does)",
        p.display()
    );
    p
}

/// The server binary.
pub fn binary() -> PathBuf {
    artifact("portcullis")
}

/// The example program that embeds the library (`examples/embedded-app`).
pub fn embedded_app() -> PathBuf {
    artifact("embedded-app")
}

/// A plugin library by crate name, e.g. `portcullis_plugin_jwt`.
pub fn plugin(lib: &str) -> PathBuf {
    artifact(&format!("lib{lib}.so"))
}

/// The shipped jwt plugin.
pub fn jwt_plugin() -> PathBuf {
    plugin("portcullis_plugin_jwt")
}

/// A 32+ byte HMAC secret for tests.
pub const SECRET: &str = "test-secret-0123456789abcdefghijklmnopqrstuvwxyz";

/// A running server process.
pub struct Server {
    child: Child,
    /// Address it listens on.
    pub addr: SocketAddr,
    /// Address of its separate metrics listener (`server.metrics.listen`), if it has one.
    pub metrics_addr: Option<SocketAddr>,
    /// Its private folder (config, plugins, state, logs).
    pub dir: tempfile::TempDir,
    log: PathBuf,
    config: PathBuf,
}

impl Server {
    /// Writes `config` (YAML) into a fresh folder whose `plugins/` holds copies of `plugins`, starts
    /// the server and waits until it listens.
    pub fn start(config: &str, plugins: &[PathBuf]) -> Server {
        Self::start_with_env(config, plugins, &[])
    }

    /// As [`Server::start`], with extra environment variables.
    pub fn start_with_env(config: &str, plugins: &[PathBuf], env: &[(&str, &str)]) -> Server {
        match Self::try_start(config, plugins, env) {
            Ok(s) => s,
            Err(e) => panic!("server did not start: {e}"),
        }
    }

    /// Starts a server, or returns what it printed when it exited instead.
    // The child moves into `Server`, whose `Drop` kills and waits for it.
    #[allow(clippy::zombie_processes)]
    pub fn try_start(
        config: &str,
        plugins: &[PathBuf],
        env: &[(&str, &str)],
    ) -> Result<Server, String> {
        Self::try_start_with_args(config, plugins, env, &[])
    }

    /// As [`Server::start`], without the file watch (`serve --no-watch`): for tests of the
    /// explicit reload triggers, which the watch would otherwise race.
    pub fn start_without_watch(config: &str, plugins: &[PathBuf]) -> Server {
        match Self::try_start_with_args(config, plugins, &[], &["--no-watch"]) {
            Ok(s) => s,
            Err(e) => panic!("server did not start: {e}"),
        }
    }

    /// As [`Server::try_start`], with extra `serve` arguments.
    pub fn try_start_with_args(
        config: &str,
        plugins: &[PathBuf],
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Result<Server, String> {
        let (dir, cfg) = Self::folder(config, plugins);
        Self::spawn_in(dir, cfg, args, env)
    }

    /// As [`Server::start`] for another program (see [`Server::spawn_program_in`]).
    pub fn start_program(
        program: &Path,
        config: &str,
        plugins: &[PathBuf],
        env: &[(&str, &str)],
    ) -> Server {
        let (dir, cfg) = Self::folder(config, plugins);
        match Self::spawn_program_in(program, dir, cfg, &[], env) {
            Ok(s) => s,
            Err(e) => panic!("{} did not start: {e}", program.display()),
        }
    }

    /// A fresh folder with `config` in `config.yaml` and copies of `plugins` in `plugins/`.
    fn folder(config: &str, plugins: &[PathBuf]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let pdir = dir.path().join("plugins");
        std::fs::create_dir_all(&pdir).expect("plugins dir");
        for p in plugins {
            std::fs::copy(p, pdir.join(p.file_name().expect("file name"))).expect("copy plugin");
        }
        let cfg = dir.path().join("config.yaml");
        std::fs::write(&cfg, config).expect("write config");
        (dir, cfg)
    }

    /// Starts a server on a folder the caller prepared: `config` is the config file to pass (it
    /// may be a symlink, as in a Kubernetes ConfigMap), `args` extra `serve` arguments.
    pub fn spawn_in(
        dir: tempfile::TempDir,
        cfg: PathBuf,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, String> {
        let args: Vec<&str> = std::iter::once("serve")
            .chain(args.iter().copied())
            .collect();
        Self::spawn_program_in(&binary(), dir, cfg, &args, env)
    }

    /// As [`Server::spawn_in`] for another program that serves a config as `portcullis serve`
    /// does (a program embedding the library): `program ARGS --config CONFIG`, announcing its
    /// listeners with the same lines.
    #[allow(clippy::zombie_processes)]
    pub fn spawn_program_in(
        program: &Path,
        dir: tempfile::TempDir,
        cfg: PathBuf,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, String> {
        let log = dir.path().join("server.log");
        let mut cmd = Command::new(program);
        cmd.args(args)
            .arg("--config")
            .arg(&cfg)
            .env("PORTCULLIS_STATE_DIR", dir.path().join("state"))
            .env("PORTCULLIS_LOG", "info")
            .env_remove("PORT")
            .env_remove("JWT_AUTH_SECRET")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // With `--log-format json` the same text is the line's `fields.message`.
                let line = match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(v) => v["fields"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    Err(_) => line,
                };
                if let Some(rest) = line.strip_prefix("portcullis listening on ") {
                    let _ = tx.send((true, rest.to_string()));
                } else if let Some(rest) = line.strip_prefix("portcullis metrics listening on ") {
                    let _ = tx.send((false, rest.to_string()));
                }
            }
        });
        let addr_of = |url: &str| -> Result<SocketAddr, String> {
            let hostport = url.split("://").nth(1).unwrap_or_default();
            hostport
                .parse()
                .map_err(|e| format!("bad address {hostport}: {e}"))
        };
        // The metrics listener (if any) is announced before the main one.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut metrics_addr = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((false, url)) => metrics_addr = Some(addr_of(&url)?),
                Ok((true, url)) => {
                    return Ok(Server {
                        child,
                        addr: addr_of(&url)?,
                        metrics_addr,
                        dir,
                        log,
                        config: cfg,
                    })
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(std::fs::read_to_string(&log).unwrap_or_default());
                }
            }
        }
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.config.clone()
    }

    /// The plugins folder the server was started with (`plugins/` in its folder).
    pub fn plugins_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// The process id (to send signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How the process exited, once it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Killed, the server cannot remove its plugin staging folder itself (it does on a normal
        // stop): do it for it, so that test runs leave nothing in the temp folder.
        let prefix = format!("portcullis-staging-{pid}-");
        if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// A plain HTTP client that never follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// `POST /api/admin/reload` with `token`: the status code and the JSON body. A refused reload is
/// 422 with `"result": "failed"`; applied and unchanged are 200.
pub async fn admin_reload(s: &Server, token: &str) -> (u16, serde_json::Value) {
    let r = client()
        .post(s.url("/api/admin/reload"))
        .bearer_auth(token)
        .send()
        .await
        .expect("reload request");
    let status = r.status().as_u16();
    let body = r.json().await.expect("reload answers JSON");
    (status, body)
}

/// Sends a raw request line + headers over TCP and returns the status code, so that paths that
/// HTTP clients would normalize (`..`, `%2e`, `//`) reach the server exactly as written.
pub async fn raw_status(addr: SocketAddr, request_target: &str, headers: &[(&str, &str)]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("GET {request_target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Signs `claims` with HS256 and `secret`.
pub fn hs256(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// Standard claims for `sub`, valid for an hour, plus `extra`.
pub fn claims(sub: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut c = serde_json::json!({ "sub": sub, "iat": now(), "exp": now() + 3600 });
    if let (Some(m), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    c
}

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An RSA-2048 signing key with its public JWK and PEM.
pub struct RsaKey {
    /// Key id.
    pub kid: String,
    encoding: jsonwebtoken::EncodingKey,
    /// Public JWK.
    pub jwk: serde_json::Value,
    /// Public key PEM (SPKI).
    pub pem: String,
}

impl RsaKey {
    /// A fresh key.
    pub fn generate(kid: &str) -> RsaKey {
        use aws_lc_rs::{encoding::AsDer, rsa::KeySize, signature::KeyPair as _};
        let kp = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048).expect("rsa keygen");
        let pkcs8 = kp.as_der().expect("pkcs8");
        let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(
            pem_block("PRIVATE KEY", pkcs8.as_ref()).as_bytes(),
        )
        .expect("pkcs8 pem");
        let public = kp.public_key();
        let spki = public.as_der().expect("spki");
        let pem = pem_block("PUBLIC KEY", spki.as_ref());
        let n = public.modulus().big_endian_without_leading_zero();
        let e = public.exponent().big_endian_without_leading_zero();
        let jwk = serde_json::json!({ "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(n), "e": b64(e) });
        RsaKey {
            kid: kid.into(),
            encoding,
            jwk,
            pem,
        }
    }

    /// Signs `claims` with RS256 and this key's `kid`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.encoding).expect("sign")
    }

    /// Signs with an arbitrary `kid` (for unknown-kid tests).
    pub fn sign_with_kid(&self, kid: &str, claims: &serde_json::Value) -> String {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, claims, &self.encoding).expect("sign")
    }
}

/// A PEM block.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A local JWKS endpoint (`GET /jwks`) whose key set can be swapped and whose hits are counted.
pub struct JwksServer {
    /// Base URL.
    pub base: String,
    keys: Arc<Mutex<serde_json::Value>>,
    hits: Arc<AtomicU64>,
    max_age: Arc<AtomicU64>,
    _server: mock::MockServer,
}

type JwksState = (
    Arc<Mutex<serde_json::Value>>,
    Arc<AtomicU64>,
    Arc<AtomicU64>,
);

impl JwksServer {
    /// Starts serving `{"keys": keys}`.
    pub async fn start(keys: Vec<serde_json::Value>) -> JwksServer {
        use poem::{handler, web::Data, EndpointExt, Route};
        #[handler]
        fn jwks(Data(state): Data<&JwksState>) -> poem::Response {
            state.1.fetch_add(1, Ordering::SeqCst);
            let body = state.0.lock().expect("lock").clone();
            let max_age = state.2.load(Ordering::SeqCst);
            poem::Response::builder()
                .content_type("application/json")
                .header("cache-control", format!("public, max-age={max_age}"))
                .body(body.to_string())
        }
        let keys = Arc::new(Mutex::new(serde_json::json!({ "keys": keys })));
        let hits = Arc::new(AtomicU64::new(0));
        let max_age = Arc::new(AtomicU64::new(300));
        let app = Route::new().at("/jwks", poem::get(jwks)).data((
            keys.clone(),
            hits.clone(),
            max_age.clone(),
        ));
        let server = mock::MockServer::serve(app).await;
        JwksServer {
            base: server.base.clone(),
            keys,
            hits,
            max_age,
            _server: server,
        }
    }

    /// The `max-age` the next answers carry (300 s until set).
    pub fn set_max_age(&self, secs: u64) {
        self.max_age.store(secs, Ordering::SeqCst);
    }

    /// The JWKS URL.
    pub fn url(&self) -> String {
        format!("{}/jwks", self.base)
    }

    /// Replaces the key set.
    pub fn set_keys(&self, keys: Vec<serde_json::Value>) {
        *self.keys.lock().expect("lock") = serde_json::json!({ "keys": keys });
    }

    /// Requests served so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Polls `check` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// A minimal config: one `jwt` provider with [`SECRET`], the given `auth:` block (YAML, indented
/// two spaces), on 127.0.0.1:0.
pub fn jwt_config(auth: &str) -> String {
    format!(
        "version: 1\nserver:\n  host: 127.0.0.1\n  port: 0\n  build: {{ swagger_ui: true, openapi_docs: true }}\nplugins:\n  dir: plugins\nproviders:\n  - name: main\n    plugin: jwt\n    config:\n      secret: \"{SECRET}\"\n      issuer: [\"https://issuer.test\"]\n      audience: [\"api\"]\n{auth}"
    )
}

/// Claims valid for [`jwt_config`].
pub fn good_claims(sub: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut c = claims(sub, extra);
    c["iss"] = "https://issuer.test".into();
    c["aud"] = "api".into();
    c
}

/// Makes a self-signed P-256 certificate for `cn` (and IP 127.0.0.1) and writes the PKCS#8 key
/// and the certificate as PEM.
pub fn self_signed_cert(cn: &str, key: &Path, cert: &Path) {
    let pair = rcgen::KeyPair::generate().expect("p-256 keygen");
    std::fs::write(key, pem_block("PRIVATE KEY", &pair.serialize_der())).expect("write key");
    let cert_pem = self_signed_pem(&pair, cn, &["127.0.0.1"]);
    std::fs::write(cert, cert_pem).expect("write certificate");
}

/// A self-signed certificate (PEM) for `pair`'s public key, with common name `cn` and the
/// subject alternative names `sans` (IP addresses or DNS names).
pub fn self_signed_pem(pair: &rcgen::KeyPair, cn: &str, sans: &[&str]) -> String {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(sans).expect("certificate names");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(pair).expect("self-signed certificate");
    pem_block("CERTIFICATE", cert.der())
}

/// The faulty test plugin's marker: the built file carries it, and [`flavored_plugin`] rewrites
/// it to make a second version of the same plugin with different content and behaviour.
pub const FLAVOR_MARKER: &[u8] = b"PORTCULLIS-FLAVOR:AAAAA";

/// The faulty test plugin with its flavor (five ASCII letters) rewritten, as bytes.
pub fn flavored_plugin(flavor: &str) -> Vec<u8> {
    assert_eq!(flavor.len(), 5, "a flavor is five ASCII letters");
    let mut bytes = std::fs::read(plugin("portcullis_test_faulty")).expect("faulty plugin built");
    let at = bytes
        .windows(FLAVOR_MARKER.len())
        .position(|w| w == FLAVOR_MARKER)
        .expect("flavor marker in the faulty plugin");
    let start = at + FLAVOR_MARKER.len() - 5;
    bytes[start..start + 5].copy_from_slice(flavor.as_bytes());
    bytes
}

/// Polls `check` every few milliseconds until it holds or `limit` has passed; whether it held.
pub async fn poll_until<F, Fut>(limit: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

/// Writes `content` the way an editor that saves by rename does: one atomic change.
pub fn write_by_rename(path: &Path, content: &[u8]) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, content).expect("write the new content");
    std::fs::rename(&tmp, path).expect("rename it into place");
}
