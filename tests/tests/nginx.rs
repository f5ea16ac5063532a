#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
//! Forward auth behind a real nginx (Debian's package; `.ci/run` installs it): nginx's
//! `auth_request` asks Portcullis about every request and passes the identity header to a local
//! upstream. The test starts nginx itself (`daemon off`, its own prefix, the current user) and
//! fails — never skips — when nginx is missing.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use portcullis_tests::{echo::Echo, *};
use serde_json::{json, Value};

fn nginx_binary() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file());
    found.expect("nginx is missing: install it (`apt-get install -y nginx`; .ci/run does)")
}

struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    /// nginx on a free 127.0.0.1 port: every request is checked with `auth_request` against
    /// `portcullis`'s `/forward-auth`, then proxied to `upstream` with `X-User-Id` from the verdict.
    async fn start(portcullis: &str, upstream: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().display().to_string();
        for d in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.path().join("tmp").join(d)).unwrap();
        }
        let port = free_port();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_request /_portcullis;
            auth_request_set $portcullis_user $upstream_http_x_user_id;
            proxy_set_header X-User-Id $portcullis_user;
            proxy_pass {upstream};
        }}
        location = /_portcullis {{
            internal;
            proxy_pass {portcullis}/forward-auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
        }}
    }}
}}
"#
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let mut n = Nginx {
            child,
            port,
            _dir: dir,
        };
        let url = format!("http://127.0.0.1:{port}/");
        let ready = eventually(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        if !ready || !matches!(n.child.try_wait(), Ok(None)) {
            let log = std::fs::read_to_string(n._dir.path().join("error.log")).unwrap_or_default();
            panic!("nginx did not start on {url}: {log}");
        }
        n
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

#[tokio::test]
async fn nginx_auth_request_lets_in_refuses_and_passes_the_identity() {
    let up = Echo::start().await;
    let auth = "auth:\n  protected: [\"/api/*\", \"/admin/*\"]\n  rules:\n    - path: /admin/*\n      condition: \"user.role == 'admin'\"\n      allow: true\n    - path: /admin/*\n      allow: false\n    - allow: true\n";
    let cfg = jwt_config(auth) + "gateway:\n  forward_auth: true\n";
    let s = Server::start(&cfg, &[jwt_plugin()]);
    let nginx = Nginx::start(&format!("http://{}", s.addr), &up.url()).await;
    let user = hs256(SECRET, good_claims("nina", json!({"role": "user"})));
    let admin = hs256(SECRET, good_claims("ada", json!({"role": "admin"})));
    let get = |path: &str, token: Option<&str>, spoof: bool| {
        let mut r = client().get(nginx.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if spoof {
            r = r.header("x-user-id", "mallory");
        }
        r.send()
    };

    // Allowed: the upstream sees the identity nginx took from Portcullis's answer.
    let r = get("/api/orders?page=2", Some(&user), true).await.unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["path"], "/api/orders");
    assert_eq!(b["headers"]["x-user-id"], "nina", "{b}");
    // Unauthenticated: 401 from nginx, nothing reaches the upstream.
    let r = get("/api/orders", None, false).await.unwrap();
    assert_eq!(r.status(), 401);
    let r = get("/api/orders", Some("not-a-token"), false)
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Denied by a rule: 403.
    let r = get("/admin/panel", Some(&user), false).await.unwrap();
    assert_eq!(r.status(), 403);
    let r = get("/admin/panel", Some(&admin), false).await.unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["headers"]["x-user-id"], "ada");
    // Public: no token needed; the client's spoofed identity is overwritten (empty).
    let r = get("/health-of-upstream", None, true).await.unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_ne!(b["headers"]["x-user-id"], "mallory", "{b}");
    // The original path is canonicalized: a dot-segment walk into /admin is still judged as /admin.
    let code = raw_status(
        std::net::SocketAddr::from(([127, 0, 0, 1], nginx.port)),
        "/public/../admin/panel",
        &[("authorization", &format!("Bearer {user}"))],
    )
    .await;
    assert_eq!(code, 403);
}
