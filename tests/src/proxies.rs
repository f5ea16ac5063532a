//! Real reverse proxies in front of Portcullis's forward auth: nginx (`auth_request`) and Caddy
//! (`forward_auth`), Debian's packages (`.ci/run` installs both). Each is started by the test on
//! 127.0.0.1 with its own prefix and temporary files, with the configuration `docs/config.md`
//! gives, and killed when dropped. A missing binary fails the test; it never skips.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A proxy binary from `PATH` (or the sbin folders, where Debian puts nginx).
fn binary(name: &str, install: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("{name} is missing: install it (`{install}`; .ci/run does)"))
}

/// A free port on 127.0.0.1 for a proxy process. (The proxy binds it itself; a port taken in
/// between makes the start fail loudly, not wrongly.)
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running proxy process.
pub struct Proxy {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `nginx` or `caddy`.
    pub name: &'static str,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// What the proxy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(mut self) -> Proxy {
        let port = self.port;
        let ready = crate::eventually(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        if !ready || !matches!(self.child.try_wait(), Ok(None)) {
            panic!("{} did not start on port {port}: {}", self.name, self.log());
        }
        self
    }

    /// nginx with `auth_request` against `portcullis` (`http://host:port`) for every request,
    /// then `proxy_pass` to `upstream` with the identity headers of the verdict. The auth
    /// location is the one `docs/config.md` gives for `forward_auth: nginx`.
    pub async fn nginx(portcullis: &str, upstream: &str) -> Proxy {
        Self::nginx_copying(portcullis, upstream, &[]).await
    }

    /// As [`Proxy::nginx`], also copying each header of `copy` (lower case, e.g. a header a
    /// request middleware sets) from the verdict onto the request sent to `upstream`
    /// (`auth_request_set` then `proxy_set_header`, as for the identity headers).
    pub async fn nginx_copying(portcullis: &str, upstream: &str, copy: &[&str]) -> Proxy {
        let mut copied = String::new();
        for name in copy {
            let var = name.to_ascii_lowercase().replace('-', "_");
            copied.push_str(&format!(
                "            auth_request_set $portcullis_copy_{var} $upstream_http_{var};\n            proxy_set_header {name} $portcullis_copy_{var};\n"
            ));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().display().to_string();
        for d in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.path().join("tmp").join(d)).expect("nginx temp dir");
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
            auth_request_set $portcullis_provider $upstream_http_x_auth_provider;
            proxy_set_header X-User-Id $portcullis_user;
            proxy_set_header X-Auth-Provider $portcullis_provider;
{copied}            proxy_pass {upstream};
        }}
        location = /_portcullis {{
            internal;
            proxy_pass {portcullis}/forward-auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-Host $host;
        }}
    }}
}}
"#
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let log = dir.path().join("error.log");
        let child = Command::new(binary("nginx", "apt-get install -y nginx"))
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(&log)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        Proxy {
            child,
            port,
            name: "nginx",
            dir,
            log,
        }
        .wait_ready()
        .await
    }

    /// Caddy with `forward_auth` to `portcullis` (`host:port`, no scheme) for every request,
    /// then `reverse_proxy` to `upstream` (`host:port`), copying the verdict's identity headers.
    /// The site block is the one `docs/config.md` gives for `forward_auth: caddy`.
    pub async fn caddy(portcullis: &str, upstream: &str) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let caddyfile = format!(
            r#"{{
    admin off
    auto_https off
}}
http://:{port} {{
    bind 127.0.0.1
    forward_auth {portcullis} {{
        uri /forward-auth
        copy_headers X-User-Id X-Auth-Provider
    }}
    reverse_proxy {upstream}
}}
"#
        );
        let conf_path = dir.path().join("Caddyfile");
        std::fs::write(&conf_path, caddyfile).expect("write Caddyfile");
        let log = dir.path().join("caddy.log");
        let out = std::fs::File::create(&log).expect("caddy log");
        let err = out.try_clone().expect("caddy log");
        let child = Command::new(binary("caddy", "apt-get install -y caddy"))
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&conf_path)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start caddy");
        Proxy {
            child,
            port,
            name: "caddy",
            dir,
            log,
        }
        .wait_ready()
        .await
    }

    /// The proxy's private folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
