//! The command line: `serve`, `check`, `token`, `probe`, `plugin inspect|new|test`.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{anyhow, bail, Context as _};
use clap::{Parser, Subcommand};

use crate::{
    app::{plain_line, serve_announced, shutdown_signal, App},
    observe::telemetry::{self, LogFormat, Telemetry},
    plugin::Loader,
    reload::snapshot,
};

/// Portcullis: an authenticating server with run-time-loaded identity-provider plugins.
#[derive(Parser, Debug)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    /// Log format: `human` or `json` (one object per line).
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_LOG_FORMAT",
        value_enum,
        default_value = "human"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Runs the server.
    Serve {
        /// The YAML config.
        #[arg(
            long,
            env = "PORTCULLIS_CONFIG",
            default_value = "config/portcullis.yaml"
        )]
        config: PathBuf,
        /// Do not watch the config and plugin folders; reload only on SIGHUP or the admin
        /// endpoint (for file systems without change events).
        #[arg(long)]
        no_watch: bool,
    },
    /// Checks a config (and the plugins it names) and prints every problem; exit 1 on any error.
    /// Warnings (a pattern, rule or route that can never take effect) are printed too, with exit 0.
    Check {
        /// The YAML config.
        path: PathBuf,
    },
    /// Prints a token for a `jwt` provider instance that has a `secret` (development use).
    Token {
        /// The YAML config.
        #[arg(
            long,
            env = "PORTCULLIS_CONFIG",
            default_value = "config/portcullis.yaml"
        )]
        config: PathBuf,
        /// The provider instance (default: the first `jwt` instance).
        #[arg(long)]
        provider: Option<String>,
        /// The subject.
        #[arg(long, default_value = "dev-user")]
        sub: String,
        /// Extra claims, `key=value` (a JSON value, or else a string). Repeatable.
        #[arg(long = "claim", value_name = "K=V")]
        claims: Vec<String>,
        /// Lifetime, e.g. `1h`, `15m`.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Asks the local server for `GET /health` (or `--path`) on the address its config names,
    /// for a container health check: exit 0 on a 200, 1 otherwise. Reads only `server.host`,
    /// `server.port` and `server.https` from the config (as `serve` does, `PORT` then 4111 when
    /// the port is not set), so a config edit that the server refuses does not fail the probe.
    Probe {
        /// The YAML config the server reads.
        #[arg(
            long,
            env = "PORTCULLIS_CONFIG",
            default_value = "config/portcullis.yaml"
        )]
        config: PathBuf,
        /// The path to ask for (`/ready` to ask whether the server can serve).
        #[arg(long, default_value = "/health")]
        path: String,
        /// Give up after this long.
        #[arg(long, default_value = "3s")]
        timeout: String,
    },
    /// Plugin tools.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

/// `portcullis plugin ...`.
#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Prints a plugin's manifest and ABI version, or exactly why it will not load.
    Inspect {
        /// The `.so` file.
        file: PathBuf,
    },
    /// Writes a new plugin crate (its own workspace) that builds, passes the conformance kit and
    /// loads: a provider accepting one shared key, to replace with your identity provider's check
    /// (or, with `--middleware`, a request middleware that passes the user's subject to the route
    /// in a header, to replace with your own policy).
    New {
        /// The plugin's name (`plugin:` in the YAML, and the crate's name): [a-z0-9-].
        name: String,
        /// Write a request middleware plugin (`middleware:` in the YAML) instead of a provider.
        #[arg(long)]
        middleware: bool,
        /// The folder to create the crate in (default: the current one).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Take portcullis-plugin-api from this local folder (default: the source tree this binary
        /// was built from, when it is still there; else crates.io).
        #[arg(long, value_name = "DIR", conflicts_with_all = ["sdk_git", "sdk_version"])]
        sdk_path: Option<PathBuf>,
        /// Take portcullis-plugin-api from this git repository.
        #[arg(long, value_name = "URL", conflicts_with = "sdk_version")]
        sdk_git: Option<String>,
        /// Take portcullis-plugin-api from crates.io, at this version requirement.
        #[arg(long, value_name = "VERSION")]
        sdk_version: Option<String>,
    },
    /// Runs the conformance kit on a built plugin, as an operator would before dropping it into a
    /// server: garbage configs and tokens, odd users, an identity provider that is down or answers
    /// nonsense; exit 0 when every check passes, 1 otherwise.
    Test {
        /// The `.so` file.
        file: PathBuf,
        /// An instance's `config:` mapping (YAML) to test with (default: the plugin's own example
        /// config).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Let the plugin call plain `http://` URLs, as `dangerous: { allow_http: true }` would.
        #[arg(long)]
        allow_http: bool,
        /// Test only this kind of the plugins the library exports (default: each one).
        #[arg(long, value_enum)]
        kind: Option<crate::plugin::author::Kind>,
    },
}

/// Sets up logging to stderr and, for `serve`, span export as the config's `telemetry:` and the
/// standard `OTEL_*` variables say. Before the async runtime starts; [`Telemetry::shutdown`]
/// before exiting. A config that does not load exports nothing here; `serve` then reports why.
pub fn init_telemetry(cli: &Cli) -> Telemetry {
    let config = match &cli.command {
        Command::Serve { config, .. } => crate::app::read_config(config).ok().map(|c| c.telemetry),
        _ => None,
    };
    telemetry::init(cli.log_format, config.as_ref())
}

/// Runs a parsed command line; the returned code is the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve { config, no_watch } => serve(&config, !no_watch, cli.log_format).await,
        Command::Check { path } => check(&path).await,
        Command::Token {
            config,
            provider,
            sub,
            claims,
            ttl,
        } => {
            let token = mint(&config, provider.as_deref(), &sub, &claims, &ttl)?;
            println!("{token}");
            Ok(0)
        }
        Command::Probe {
            config,
            path,
            timeout,
        } => probe(&config, &path, &timeout).await,
        Command::Plugin { command } => plugin_command(command),
    }
}

/// The URL the server at `config` answers on, from the loopback side: a wildcard host is asked
/// on the loopback address of its family.
pub fn probe_url(config_text: &str, path: &str) -> anyhow::Result<String> {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(config_text).map_err(|_| anyhow!("the config is not YAML"))?;
    let server = &doc["server"];
    let vars = crate::config::EnvVars {
        dev_secret: &|| Err("not needed to find the port".into()),
    };
    let text = |v: &serde_yaml::Value| -> anyhow::Result<Option<String>> {
        match v {
            serde_yaml::Value::Null => Ok(None),
            serde_yaml::Value::String(s) => crate::config::expand_str(s, &vars)
                .map(Some)
                .map_err(|e| anyhow!(e)),
            serde_yaml::Value::Number(n) => Ok(Some(n.to_string())),
            _ => bail!("not a string or a number"),
        }
    };
    let port: u16 = match text(&server["port"]).context("server.port")? {
        Some(p) => p.parse().context("server.port")?,
        None => std::env::var("PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(crate::config::DEFAULT_PORT),
    };
    let host = text(&server["host"])
        .context("server.host")?
        .unwrap_or_else(|| "127.0.0.1".into());
    let host = match host.trim_matches(['[', ']']) {
        "0.0.0.0" | "" => "127.0.0.1".to_string(),
        "::" => "[::1]".to_string(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_string(),
    };
    let scheme = if server["https"].is_mapping() {
        "https"
    } else {
        "http"
    };
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    Ok(format!("{scheme}://{host}:{port}{path}"))
}

async fn probe(config: &Path, path: &str, timeout: &str) -> anyhow::Result<i32> {
    let timeout = humantime::parse_duration(timeout).context("--timeout")?;
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let url = probe_url(&text, path).with_context(|| config.display().to_string())?;
    // Our own server on our own address: its certificate names the public host, not loopback.
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .tls_danger_accept_invalid_certs(true)
        .build()?;
    match client.get(&url).send().await {
        Ok(r) if r.status() == reqwest::StatusCode::OK => Ok(0),
        Ok(r) => {
            eprintln!("{url}: {}", r.status());
            Ok(1)
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            Ok(1)
        }
    }
}

async fn serve(config: &Path, watch: bool, format: LogFormat) -> anyhow::Result<i32> {
    let triggers = crate::app::Triggers {
        watch,
        sighup: true,
    };
    let app = match App::start_engine(config, triggers).await {
        Ok(app) => app,
        Err(errors) => {
            for e in &errors {
                eprintln!(
                    "{}",
                    plain_line(format, "ERROR", &format!("error: {e}"), None)
                );
            }
            return Ok(1);
        }
    };
    let endpoint = crate::api::endpoint(app.clone());
    serve_announced(app, endpoint, format, shutdown_signal())
        .await
        .context("server")?;
    Ok(0)
}

async fn check(path: &Path) -> anyhow::Result<i32> {
    let loader = Arc::new(Loader::in_temp_dir()?);
    let config = match crate::app::read_config_reporting_all(path, &loader, None).await {
        Ok(c) => c,
        Err(lines) => {
            for line in lines {
                println!("{line}");
            }
            return Ok(1);
        }
    };
    let warnings = config.warning_lines();
    for w in &warnings {
        println!("warning: {w}");
    }
    let http = crate::keys::HttpClient::new().map_err(|e| anyhow!(e))?;
    let shared = Arc::new(crate::plugin::SharedServices {
        http: http.clone(),
        keys: Arc::new(crate::keys::KeyCache::new(http, Default::default())),
        max_response_bytes: 4 * 1024 * 1024,
        http_timeout: Duration::from_secs(10),
    });
    match snapshot::build(config, 1, &loader, &shared, None, &Default::default()).await {
        Ok(rt) => {
            for p in &rt.plugins {
                if let snapshot::PluginFile::Failed(e) = p {
                    println!("warning: {e}");
                }
            }
            let warned = match warnings.len() {
                0 => String::new(),
                n => format!(", {n} warning(s)"),
            };
            println!(
                "{}: ok ({} provider instance(s){warned})",
                path.display(),
                rt.providers.len()
            );
            Ok(0)
        }
        Err(errors) => {
            for e in errors {
                println!("{}: {e}", path.display());
            }
            Ok(1)
        }
    }
}

fn mint(
    config: &Path,
    provider: Option<&str>,
    sub: &str,
    claims: &[String],
    ttl: &str,
) -> anyhow::Result<String> {
    let cfg = crate::app::read_config(config).map_err(|e| anyhow!("{e}"))?;
    let p = cfg
        .providers
        .iter()
        .find(|p| match provider {
            Some(name) => p.name == name,
            None => p.plugin == "jwt",
        })
        .ok_or_else(|| match provider {
            Some(name) => anyhow!(
                "no provider instance named `{name}` in {}",
                config.display()
            ),
            None => anyhow!("no `jwt` provider instance in {}", config.display()),
        })?;
    let spec: portcullis_plugin_api::JwtVerifierSpec = serde_json::from_value(p.config.clone())
        .map_err(|e| {
            anyhow!(
                "providers ({}).config: {}",
                p.name,
                portcullis_plugin_api::redact_serde_error(&e.to_string())
            )
        })?;
    let secret = match spec.secret.filter(|s| !s.is_empty()) {
        Some(s) => s,
        None if spec.public_keys.is_empty() && spec.jwks_url.is_none() => {
            std::env::var("JWT_AUTH_SECRET")
                .ok()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    anyhow!("provider `{}` has no secret (set JWT_AUTH_SECRET)", p.name)
                })?
        }
        None => bail!(
            "provider `{}` verifies with public keys; only a secret-based provider can mint tokens",
            p.name
        ),
    };
    let alg = match spec.algorithms.first().map(String::as_str) {
        None | Some("HS256") => jsonwebtoken::Algorithm::HS256,
        Some("HS384") => jsonwebtoken::Algorithm::HS384,
        Some("HS512") => jsonwebtoken::Algorithm::HS512,
        Some(other) => bail!(
            "provider `{}` pins {other}; tokens can only be minted for HS256/384/512",
            p.name
        ),
    };
    let ttl = humantime::parse_duration(ttl).context("--ttl")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut body = serde_json::Map::new();
    body.insert("sub".into(), sub.into());
    body.insert("iat".into(), now.into());
    body.insert("exp".into(), (now + ttl.as_secs()).into());
    if let Some(iss) = spec.issuer.first() {
        body.insert("iss".into(), iss.clone().into());
    }
    if let Some(aud) = spec.audience.first() {
        body.insert("aud".into(), aud.clone().into());
    }
    for c in claims {
        let (k, v) = c
            .split_once('=')
            .ok_or_else(|| anyhow!("--claim wants key=value, got `{c}`"))?;
        let value =
            serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
        body.insert(k.to_string(), value);
    }
    let header = jsonwebtoken::Header::new(alg);
    Ok(jsonwebtoken::encode(
        &header,
        &body,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

fn plugin_command(command: PluginCommand) -> anyhow::Result<i32> {
    use crate::plugin::author::{self, SdkSource};
    match command {
        PluginCommand::Inspect { file } => inspect(&file),
        PluginCommand::New {
            name,
            middleware,
            dir,
            sdk_path,
            sdk_git,
            sdk_version,
        } => {
            let sdk = match (sdk_path, sdk_git, sdk_version) {
                (Some(p), _, _) => SdkSource::Path(
                    p.canonicalize()
                        .with_context(|| format!("--sdk-path {}", p.display()))?,
                ),
                (_, Some(url), _) => SdkSource::Git(url),
                (_, _, Some(v)) => SdkSource::Registry(v),
                _ => SdkSource::default_for_this_build(),
            };
            let kind = if middleware {
                author::Kind::Middleware
            } else {
                author::Kind::Provider
            };
            let made = author::new_crate(&name, &dir, &sdk, kind)?;
            println!("created {}", made.dir.display());
            match &sdk {
                SdkSource::Path(p) => println!("portcullis-plugin-api from {}", p.display()),
                SdkSource::Git(url) => println!("portcullis-plugin-api from {url}"),
                SdkSource::Registry(v) => println!("portcullis-plugin-api {v} from crates.io"),
            }
            println!(
                "next: cd {} && cargo test && cargo build --release && portcullis plugin test {}",
                made.dir.display(),
                made.library
            );
            Ok(0)
        }
        PluginCommand::Test {
            file,
            config,
            allow_http,
            kind,
        } => match author::test_library(&file, config.as_deref(), allow_http, kind) {
            Ok(reports) => {
                for report in &reports {
                    print!("{report}");
                }
                Ok(if reports.iter().all(|r| r.passed()) {
                    0
                } else {
                    1
                })
            }
            Err(e) => {
                println!("{e:#}");
                Ok(1)
            }
        },
    }
}

fn inspect(file: &Path) -> anyhow::Result<i32> {
    let loader = Loader::in_temp_dir()?;
    match loader.load(file, None) {
        Ok(p) => {
            let out = serde_json::json!({
                "file": file.display().to_string(),
                "sha256": p.hash,
                "kinds": p.kinds(),
                "manifest": p.manifest,
                "middleware_manifest": p.middleware,
                "host_abi_version": crate::plugin::ABI_VERSION,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(0)
        }
        Err(e) => {
            println!("{e}");
            Ok(1)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use super::probe_url;

    #[test]
    fn the_probe_asks_the_port_and_host_the_config_names() {
        let url = |yaml: &str| probe_url(yaml, "/health").unwrap();
        assert_eq!(
            url("version: 1\nserver:\n  host: 0.0.0.0\n  port: 8080\n"),
            "http://127.0.0.1:8080/health"
        );
        assert_eq!(
            url("version: 1\nserver: { host: '::', port: 9000, https: { key: k, cert: c } }\n"),
            "https://[::1]:9000/health"
        );
        assert_eq!(
            url("version: 1\nserver: { host: 10.1.2.3, port: 1 }\n"),
            "http://10.1.2.3:1/health"
        );
        assert_eq!(
            probe_url("server: { port: 81 }", "ready").unwrap(),
            "http://127.0.0.1:81/ready"
        );
        // Expanded as the server expands it; the fallback applies when the variable is unset.
        assert_eq!(
            url("server: { host: '${PORTCULLIS_PROBE_TEST_UNSET:-0.0.0.0}', port: 4200 }"),
            "http://127.0.0.1:4200/health"
        );
        assert!(probe_url("server: { port: nope }", "/").is_err());
        assert!(probe_url("server: [", "/").is_err());
    }
}
