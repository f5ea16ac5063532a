//! `providers:` compiled: instance names, plugin names, cache settings, the plugin checks a refused config still gets.

use super::*;

/// The instances, and what of them the plugin checks need (kept apart: a refused config has no
/// `Vec<ProviderConfig>` to show, and an index may be skipped).
pub(super) fn compile_providers(
    value: Option<Value>,
    issues: &mut Issues,
) -> (Vec<ProviderConfig>, Vec<InstanceCheck>) {
    let items = match value {
        None | Some(Value::Null) => return Default::default(),
        Some(Value::Sequence(items)) => items,
        Some(_) => {
            issues.push("providers", "must be a list of provider instances");
            return Default::default();
        }
    };
    let mut out: Vec<ProviderConfig> = Vec::new();
    let mut checks: Vec<InstanceCheck> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("providers[{i}]");
        let Some(raw) = de_value::<RawProvider>(item, &path, issues) else {
            continue;
        };
        if !valid_name(&raw.name) {
            issues.push(
                format!("{path}.name"),
                "use lower-case letters, digits, `-` and `_` (1-64)",
            );
        }
        if out.iter().any(|p| p.name == raw.name) {
            issues.push(
                format!("{path}.name"),
                format!("duplicate provider name `{}`", raw.name),
            );
        }
        if !valid_name(&raw.plugin) {
            issues.push(format!("{path}.plugin"), "not a plugin name");
        }
        let Some(config) = config_json(raw.config, &path, issues) else {
            continue;
        };
        // A name that cannot be a plugin's is reported above; no plugin is asked about it.
        if valid_name(&raw.plugin) {
            checks.push(InstanceCheck {
                index: i,
                name: raw.name.clone(),
                plugin: raw.plugin.clone(),
                config: config.clone(),
                allow_http: raw.dangerous.allow_http,
            });
        }
        let authorize = compile_condition(
            raw.authorize.as_deref(),
            format!("{path}.authorize"),
            issues,
        )
        .map(Arc::new);
        let authorization_cache = cache_setting(
            raw.authorization_cache.as_ref(),
            &format!("{path}.authorization_cache"),
            (Duration::ZERO, MAX_AUTHORIZATION_CACHE_TTL),
            "at most 1h: cached answers outlive membership changes",
            issues,
        );
        let authentication_cache = cache_setting(
            raw.authentication_cache.as_ref(),
            &format!("{path}.authentication_cache"),
            // Token expiry is in whole seconds, and so is this.
            (Duration::from_secs(1), MAX_AUTHENTICATION_CACHE_AGE),
            "at most 1h: an accepted token is reused no longer than that (and never past its exp)",
            issues,
        );
        out.push(ProviderConfig {
            name: raw.name,
            plugin: raw.plugin,
            config,
            authorize,
            allow_http: raw.dangerous.allow_http,
            authorization_cache,
            authentication_cache,
        });
    }
    (out, checks)
}

/// An instance's `config:` mapping as JSON (absent: `{}`); `None` when it is not a mapping, with
/// the problem recorded at `{at}.config`.
pub(super) fn config_json(
    value: Option<Value>,
    at: &str,
    issues: &mut Issues,
) -> Option<serde_json::Value> {
    match value {
        None | Some(Value::Null) => Some(serde_json::Value::Object(Default::default())),
        Some(v @ Value::Mapping(_)) => match serde_json::to_value(&v) {
            Ok(j) => Some(j),
            Err(_) => {
                issues.push(
                    format!("{at}.config"),
                    "cannot be represented as JSON (non-string keys?)",
                );
                None
            }
        },
        Some(_) => {
            issues.push(format!("{at}.config"), "must be a mapping");
            None
        }
    }
}

/// `authorization_cache:` or `authentication_cache:` — a duration such as `30s`, or `0` to turn
/// the cache off; within `(min, max)` (`too_long` says why not longer). Absent: the default, which
/// depends on the plugin (see [`CacheSetting`]).
pub(super) fn cache_setting(
    value: Option<&Value>,
    path: &str,
    (min, max): (Duration, Duration),
    too_long: &str,
    issues: &mut Issues,
) -> CacheSetting {
    let ttl = match value {
        None | Some(Value::Null) => return CacheSetting::Default,
        Some(Value::Number(n)) if n.as_u64() == Some(0) => return CacheSetting::Off,
        Some(Value::Bool(false)) => return CacheSetting::Off,
        Some(Value::String(s)) if s.trim() == "0" => return CacheSetting::Off,
        Some(Value::String(s)) => match humantime::parse_duration(s.trim()) {
            Ok(d) => d,
            Err(_) => {
                issues.push(
                    path,
                    "not a duration (examples: 30s, 2m; 0 turns the cache off)",
                );
                return CacheSetting::Off;
            }
        },
        Some(_) => {
            issues.push(
                path,
                "must be a duration such as 30s, or 0 to turn the cache off",
            );
            return CacheSetting::Off;
        }
    };
    if ttl.is_zero() {
        CacheSetting::Off
    } else if ttl > max {
        issues.push(path, too_long);
        CacheSetting::Off
    } else if ttl < min {
        issues.push(
            path,
            format!(
                "at least {} (or 0 to turn the cache off)",
                humantime::format_duration(min)
            ),
        );
        CacheSetting::Off
    } else {
        CacheSetting::Ttl(ttl)
    }
}

pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}
