//! A plugin's configuration: its keys, declared once on the config struct with
//! `#[derive(PluginConfig)]`, and how the SDK reads an instance's `config:` mapping.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{error::PluginError, host::Host};

/// A configuration struct whose keys are known: derive it with `#[derive(PluginConfig)]`.
///
/// ```
/// use portcullis_plugin_api::PluginConfig;
/// use serde::Deserialize;
///
/// #[derive(Deserialize, PluginConfig)]
/// #[serde(deny_unknown_fields)]
/// struct Config {
///     /// Secret API key `sk_…`.
///     #[config(secret, env = "EXAMPLE_API_KEY", example = "sk_test_0123456789")]
///     api_key: String,
///     /// API base URL (default `https://api.example.com`).
///     #[config(url)]
///     api_base: Option<String>,
///     /// Clock leeway in seconds (default 30).
///     #[config(example = "30")]
///     leeway_secs: Option<u64>,
/// }
///
/// let keys = Config::KEYS;
/// assert_eq!(keys[0].name(), "api_key");
/// assert!(keys[0].is_required() && keys[0].is_secret());
/// assert_eq!(keys[0].env_var(), Some("EXAMPLE_API_KEY"));
/// assert!(keys[1].is_url() && !keys[1].is_required());
/// ```
///
/// The derive reads each field's `///` comment as the key's description, `Option<…>` and
/// `#[serde(default)]` as "not required", `#[serde(rename = "…")]` as the key's name, and:
///
/// | `#[config(…)]` | meaning |
/// |---|---|
/// | `secret` | never shown: `plugin inspect`, error messages and the status API mask it |
/// | `env = "NAME"` | when the key is absent, the server's environment variable `NAME` is used: as a string, or split on commas for a `Vec<String>` (add `split` for another type that reads a list) |
/// | `env_unless = "a b"` | … but not when one of the keys `a`, `b` is set |
/// | `url` | a URL the plugin calls (string or list): `check` and a reload refuse plain `http://` unless the instance sets `dangerous: { allow_http: true }` |
/// | `example = "…"` | a value for the example config (required keys must have one); as-is for string keys, JSON otherwise |
///
/// Environment fallbacks are read from the **server's** environment when an instance is checked
/// or built (at start and at each reload that rebuilds it). The environment of a running process
/// never changes: a variable exported after the server started is not seen until a restart. A
/// value that must change without one belongs in the YAML, or in a file named by
/// `${file:PATH}` there, which every reload reads again.
pub trait PluginConfig: DeserializeOwned {
    /// The keys, in declaration order.
    const KEYS: &'static [ConfigKey];
}

/// One configuration key (see [`PluginConfig`]). Built by the derive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigKey {
    name: &'static str,
    description: &'static str,
    required: bool,
    secret: bool,
    env: Option<&'static str>,
    env_split: bool,
    env_unless: &'static [&'static str],
    url: bool,
    example: Option<Example>,
}

/// An example value of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Example {
    Text(&'static str),
    Json(&'static str),
}

impl ConfigKey {
    /// A key that is optional, not secret, without env fallback or example.
    pub const fn new(name: &'static str, description: &'static str) -> ConfigKey {
        ConfigKey {
            name,
            description,
            required: false,
            secret: false,
            env: None,
            env_split: false,
            env_unless: &[],
            url: false,
            example: None,
        }
    }
    /// The provider cannot be built without it (unless its env fallback is set).
    pub const fn required(mut self) -> ConfigKey {
        self.required = true;
        self
    }
    /// Its value is a secret.
    pub const fn secret(mut self) -> ConfigKey {
        self.secret = true;
        self
    }
    /// Read from the server's environment variable `name` when absent.
    pub const fn env(mut self, name: &'static str) -> ConfigKey {
        self.env = Some(name);
        self
    }
    /// Read from the server's environment variable `name`, split on commas, when absent (a list
    /// of strings).
    pub const fn env_split(mut self, name: &'static str) -> ConfigKey {
        self.env = Some(name);
        self.env_split = true;
        self
    }
    /// … except when one of these keys is set.
    pub const fn env_unless(mut self, keys: &'static [&'static str]) -> ConfigKey {
        self.env_unless = keys;
        self
    }
    /// Its value is a URL (or a list of URLs) the plugin calls.
    pub const fn url(mut self) -> ConfigKey {
        self.url = true;
        self
    }
    /// An example value, used as a string.
    pub const fn example_text(mut self, value: &'static str) -> ConfigKey {
        self.example = Some(Example::Text(value));
        self
    }
    /// An example value, written as JSON.
    pub const fn example_json(mut self, json: &'static str) -> ConfigKey {
        self.example = Some(Example::Json(json));
        self
    }

    /// The key's name under `config:`.
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// What it is for.
    pub fn description(&self) -> &'static str {
        self.description
    }
    /// Whether the provider cannot be built without it.
    pub fn is_required(&self) -> bool {
        self.required
    }
    /// Whether its value is a secret.
    pub fn is_secret(&self) -> bool {
        self.secret
    }
    /// The environment variable read when it is absent.
    pub fn env_var(&self) -> Option<&'static str> {
        self.env
    }
    /// The keys whose presence turns the env fallback off.
    pub fn env_unless_keys(&self) -> &'static [&'static str] {
        self.env_unless
    }
    /// Whether its value is a URL the plugin calls.
    pub fn is_url(&self) -> bool {
        self.url
    }
    /// The example value, if any (a JSON example that does not parse is `Err`).
    pub fn example(&self) -> Option<Result<Value, String>> {
        match self.example? {
            Example::Text(s) => Some(Ok(Value::String(s.to_string()))),
            Example::Json(s) => Some(
                serde_json::from_str(s)
                    .map_err(|_| format!("{}: example is not JSON: {s}", self.name)),
            ),
        }
    }
}

/// A config value written as one string or a list of them (`audience: api` or
/// `audience: [api, admin]`).
#[derive(serde::Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The example `config:` mapping: every key that has an example.
pub fn example_config(keys: &[ConfigKey]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for key in keys {
        if let Some(example) = key.example() {
            out.insert(key.name.to_string(), example?);
        }
    }
    Ok(out)
}

/// Reads an instance's `config:` (JSON object text) into `C`: env fallbacks filled in, URL keys
/// checked against the instance's URL policy, serde errors stripped of values.
pub(crate) fn read<C: PluginConfig>(json: &str, host: &Host) -> Result<C, PluginError> {
    // serde reads a struct from a JSON list too (`[]` is a config with every default): a provider's
    // config is a mapping, so anything else is refused before it reaches the plugin's type.
    let mut map = match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(map)) => map,
        _ => return Err(PluginError::config("the provider config must be a mapping")),
    };
    let set = |map: &Map<String, Value>, name: &str| match map.get(name) {
        None | Some(Value::Null) => false,
        Some(Value::Array(list)) => !list.is_empty(),
        Some(_) => true,
    };
    for key in C::KEYS {
        let Some(var) = key.env else { continue };
        if set(&map, key.name) || key.env_unless.iter().any(|k| set(&map, k)) {
            continue;
        }
        let Some(value) = host.env(var).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let value = if key.env_split {
            Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_string()))
                    .collect(),
            )
        } else {
            Value::String(value)
        };
        map.insert(key.name.to_string(), value);
    }
    for key in C::KEYS.iter().filter(|k| k.url) {
        let urls: Vec<&str> = match map.get(key.name) {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for url in urls {
            host.check_url(url).map_err(|e| e.context(key.name))?;
        }
    }
    serde_json::from_value(Value::Object(map)).map_err(|e| {
        let message = redact_serde_error(&e.to_string());
        // serde names a missing key but not where its value could also come from.
        let hint = C::KEYS.iter().find_map(|k| {
            let missing = format!("missing field `{}`", k.name);
            (message.contains(&missing))
                .then_some(k.env)
                .flatten()
                .map(|var| format!(" (or set {var} in the server's environment)"))
        });
        PluginError::config(message + &hint.unwrap_or_default())
    })
}

/// Serde messages quote the offending value (`invalid type: string "abc..."`); a value may be a
/// secret, so quoted values are dropped and only the shape of the error is kept.
pub fn redact_serde_error(message: &str) -> String {
    // Drop the " at line L column C" suffix: positions in generated JSON mean nothing to a user.
    let message = match message.find(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    // Keep backtick-quoted names (field and variant names from the schema) but drop double-quoted
    // input values.
    while let Some(start) = rest.find('"') {
        out.push_str(&rest[..start]);
        match rest[start + 1..].find('"') {
            Some(end) => {
                out.push_str("\"…\"");
                rest = &rest[start + 1 + end + 1..];
            }
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    // Backtick-quoted names come from the schema (`expected one of ...`) or from the input's keys
    // (`unknown field ...`). Schema names are short; a long one is more likely a misplaced value
    // (a secret pasted as a key), so it is elided too.
    let mut redacted = String::with_capacity(out.len());
    let mut parts = out.split('`');
    if let Some(first) = parts.next() {
        redacted.push_str(first);
    }
    for (i, part) in parts.enumerate() {
        redacted.push('`');
        if i % 2 == 0 && part.chars().count() > 32 {
            redacted.push('…');
        } else {
            redacted.push_str(part);
        }
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_values_keeps_names() {
        let m = redact_serde_error(
            "invalid type: string \"sk_live_secret\", expected u64 at line 1 column 9",
        );
        assert_eq!(m, "invalid type: string \"…\", expected u64");
        let m = redact_serde_error("unknown field `sekret`, expected one of `secret`");
        assert!(m.contains("`sekret`"));
        let m = redact_serde_error(
            "unknown field `sk_live_0123456789abcdefghijklmnopqrstuvwxyz`, expected `secret`",
        );
        assert_eq!(m, "unknown field `…`, expected `secret`");
    }

    #[test]
    fn examples_are_typed_by_key() {
        let keys = [
            ConfigKey::new("a", "text").example_text("30"),
            ConfigKey::new("b", "json").example_json("30"),
            ConfigKey::new("c", "none"),
        ];
        let example = example_config(&keys).expect("examples parse");
        assert_eq!(example["a"], Value::String("30".into()));
        assert_eq!(example["b"], serde_json::json!(30));
        assert!(!example.contains_key("c"));
        let bad = [ConfigKey::new("d", "bad").example_json("{")];
        assert!(example_config(&bad).is_err());
    }
}
