//! Tools for plugin authors and operators: `portcullis plugin new` writes a plugin crate that
//! builds, passes the conformance kit and loads; `portcullis plugin test` runs that kit on a built
//! library before it is dropped into a server.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};
use portcullis_plugin_api::conformance::{Conformance, Report};

use super::Loader;

/// The template provider (the crate documentation of portcullis-plugin-api shows the same file).
const TEMPLATE_LIB: &str = include_str!("../../../plugin-api/template/src/lib.rs");
/// Its conformance test.
const TEMPLATE_TEST: &str = include_str!("../../../plugin-api/template/tests/conformance.rs");
/// The names the template is written with, replaced by the new plugin's.
const TEMPLATE_NAME: &str = "static-key";
const MIDDLEWARE_LIB: &str = include_str!("../../../plugin-api/template-middleware/src/lib.rs");
const MIDDLEWARE_TEST: &str =
    include_str!("../../../plugin-api/template-middleware/tests/conformance.rs");
const MIDDLEWARE_NAME: &str = "stamp-user";

/// Which kind of plugin a new crate, or a test, is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// An identity provider (`providers:`).
    Provider,
    /// A request middleware (`middleware:`).
    Middleware,
}

/// Where a new plugin crate takes `portcullis-plugin-api` from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SdkSource {
    /// A local checkout of the crate (the folder holding its `Cargo.toml`).
    Path(PathBuf),
    /// A git repository holding the Portcullis workspace.
    Git(String),
    /// The crates.io registry, at this version requirement.
    Registry(String),
}

impl SdkSource {
    /// The SDK of the source tree this binary was built from, when that tree is still there;
    /// else the registry release of this ABI major.
    pub fn default_for_this_build() -> SdkSource {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-api");
        match dir.canonicalize() {
            Ok(dir) if dir.join("Cargo.toml").is_file() => SdkSource::Path(dir),
            _ => SdkSource::Registry(portcullis_plugin_api::abi::ABI_MAJOR.to_string()),
        }
    }

    /// The dependency's TOML value, with `extra` (e.g. `features = ["testing"]`) added.
    fn toml(&self, extra: &str) -> String {
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(", {extra}")
        };
        match self {
            SdkSource::Path(p) => format!(
                "{{ path = {}{extra} }}",
                toml_string(&p.display().to_string())
            ),
            SdkSource::Git(url) => format!("{{ git = {}{extra} }}", toml_string(url)),
            SdkSource::Registry(v) => format!("{{ version = {}{extra} }}", toml_string(v)),
        }
    }
}

fn toml_string(s: &str) -> String {
    // A TOML basic string is a JSON string for everything a path or URL holds.
    serde_json::Value::String(s.to_string()).to_string()
}

/// `my-provider` → `MyProvider`.
fn camel(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Checks a plugin name: what instances write in `plugin:`, and the crate's name.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!("`{name}`: a plugin name is 1-64 of [a-z0-9-], starting with a letter (e.g. my-provider)");
    }
    Ok(())
}

/// What `plugin new` wrote.
#[derive(Debug)]
pub struct NewCrate {
    /// The crate's folder.
    pub dir: PathBuf,
    /// The library file `cargo build --release` writes, relative to `dir`.
    pub library: String,
}

/// Writes the crate of plugin `name` into `parent/name`, which must not exist.
pub fn new_crate(
    name: &str,
    parent: &Path,
    sdk: &SdkSource,
    kind: Kind,
) -> anyhow::Result<NewCrate> {
    check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!(
            "{}: already exists; pick another name or folder",
            dir.display()
        );
    }
    let ident = name.replace('-', "_");
    let (template_lib, template_test, template_name, what) = match kind {
        Kind::Provider => (
            TEMPLATE_LIB,
            TEMPLATE_TEST,
            TEMPLATE_NAME,
            "identity-provider",
        ),
        Kind::Middleware => (
            MIDDLEWARE_LIB,
            MIDDLEWARE_TEST,
            MIDDLEWARE_NAME,
            "request middleware",
        ),
    };
    let template_ident = template_name.replace('-', "_");
    let lib = template_lib
        .replace(template_name, name)
        .replace(&template_ident, &ident)
        .replace(&camel(template_name), &camel(name))
        .replace(
            &template_ident.to_ascii_uppercase(),
            &ident.to_ascii_uppercase(),
        );
    let test = template_test
        .replace(&template_ident, &ident)
        .replace(&camel(template_name), &camel(name));
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
description = "The `{name}` {what} plugin for Portcullis"
publish = false

[lib]
# cdylib: the .so the server loads; rlib: what the tests link.
crate-type = ["cdylib", "rlib"]

[dependencies]
portcullis-plugin-api = {sdk}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[dev-dependencies]
portcullis-plugin-api = {sdk_testing}

# A panic in a plugin must unwind to the SDK's guard (which answers that one request 500), never
# abort the server.
[profile.release]
panic = "unwind"
[profile.dev]
panic = "unwind"

# Its own workspace: the plugin builds on its own wherever it is created.
[workspace]
"#,
        sdk = sdk.toml(""),
        sdk_testing = sdk.toml(r#"features = ["testing"]"#),
    );
    fs::create_dir_all(dir.join("src"))
        .and_then(|()| fs::create_dir_all(dir.join("tests")))
        .with_context(|| format!("{}: cannot create the crate folder", dir.display()))?;
    for (file, text) in [
        ("Cargo.toml", manifest.as_str()),
        ("src/lib.rs", lib.as_str()),
        ("tests/conformance.rs", test.as_str()),
        (".gitignore", "/target\n"),
    ] {
        let path = dir.join(file);
        fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(NewCrate {
        dir,
        library: format!("target/release/lib{ident}.so"),
    })
}

/// Runs the conformance kit on the library `file`, once for each kind of plugin it exports (or
/// only `kind`): with `config` (an instance's `config:` mapping, YAML or JSON) when given, else
/// with the plugin's own example config.
pub fn test_library(
    file: &Path,
    config: Option<&Path>,
    allow_http: bool,
    kind: Option<Kind>,
) -> anyhow::Result<Vec<Report>> {
    let loader = Loader::in_temp_dir().context("cannot create the staging folder")?;
    let plugin = loader.load(file, None)?;
    let exported: Vec<Kind> = [
        (Kind::Provider, plugin.provides),
        (Kind::Middleware, plugin.middleware.is_some()),
    ]
    .into_iter()
    .filter(|(k, has)| *has && kind.is_none_or(|want| want == *k))
    .map(|(k, _)| k)
    .collect();
    if exported.is_empty() {
        bail!(
            "{}: exports no {} plugin (it exports: {})",
            file.display(),
            match kind {
                Some(Kind::Middleware) => "middleware",
                _ => "provider",
            },
            plugin.kinds().join(", ")
        );
    }
    if config.is_some() && exported.len() > 1 {
        bail!(
            "{}: exports a provider and a middleware; say which one --config is for with --kind",
            file.display()
        );
    }
    let mut reports = Vec::new();
    for k in exported {
        let manifest = match k {
            Kind::Provider => &plugin.manifest,
            Kind::Middleware => plugin.middleware.as_ref().unwrap_or(&plugin.manifest),
        };
        let mut kit = match config {
            None => match k {
                Kind::Provider => Conformance::from_example(plugin.module),
                Kind::Middleware => Conformance::from_middleware_example(plugin.module),
            }
            .map_err(anyhow::Error::msg)?,
            Some(path) => {
                let text = fs::read_to_string(path)
                    .with_context(|| format!("{}: cannot read", path.display()))?;
                let value: serde_json::Value = serde_yaml::from_str(&text)
                    .with_context(|| format!("{}: not a YAML mapping", path.display()))?;
                if !value.is_object() {
                    bail!(
                        "{}: the config must be a mapping (an instance's `config:`)",
                        path.display()
                    );
                }
                let mut kit = Conformance::new(value.clone());
                for key in manifest.config_keys.iter().filter(|k| k.secret) {
                    if let Some(serde_json::Value::String(v)) = value.get(&key.name) {
                        kit = kit.secret(v);
                    }
                }
                kit
            }
        };
        if allow_http {
            kit = kit.allow_http();
        }
        reports.push(match k {
            Kind::Provider => kit.run_module(plugin.module),
            Kind::Middleware => kit.run_middleware_module(plugin.module),
        });
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use super::*;

    #[test]
    fn names_and_identifiers() {
        assert_eq!(camel("my-provider"), "MyProvider");
        assert_eq!(camel(TEMPLATE_NAME), "StaticKey");
        for bad in ["", "My", "1x", "a_b", "a-", "a b", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        check_name("my-provider2").unwrap();
    }

    #[test]
    fn the_template_is_renamed_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let sdk = SdkSource::Path("/opt/sdk \"x\"".into());
        let made = new_crate("acme-sso", dir.path(), &sdk, Kind::Provider).unwrap();
        let lib = fs::read_to_string(made.dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("const NAME: &'static str = \"acme-sso\";"));
        assert!(lib.contains("AcmeSsoPlugin") && lib.contains("ACME_SSO"));
        for old in ["static-key", "static_key", "StaticKey", "STATIC_KEY"] {
            assert!(!lib.contains(old), "{old} left in\n{lib}");
        }
        let test = fs::read_to_string(made.dir.join("tests/conformance.rs")).unwrap();
        assert!(test.contains("use acme_sso::AcmeSsoPlugin;"));
        let manifest = fs::read_to_string(made.dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains(r#"portcullis-plugin-api = { path = "/opt/sdk \"x\"" }"#));
        assert_eq!(made.library, "target/release/libacme_sso.so");
        assert!(
            new_crate("acme-sso", dir.path(), &sdk, Kind::Provider).is_err(),
            "an existing folder is kept"
        );
        let made = new_crate("tenant-gate", dir.path(), &sdk, Kind::Middleware).unwrap();
        let lib = fs::read_to_string(made.dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("const NAME: &'static str = \"tenant-gate\";"));
        assert!(lib.contains("TenantGatePlugin") && lib.contains("export_middleware!"));
        for old in ["stamp-user", "stamp_user", "StampUser", "STAMP_USER"] {
            assert!(!lib.contains(old), "{old} left in\n{lib}");
        }
        let test = fs::read_to_string(made.dir.join("tests/conformance.rs")).unwrap();
        assert!(test.contains("use tenant_gate::TenantGatePlugin;"));
        let manifest = fs::read_to_string(made.dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("request middleware plugin"));
    }
}
