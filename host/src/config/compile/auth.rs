//! `auth:` compiled: protected and public patterns, rules, CEL conditions.

use super::*;

/// Compiles an optional CEL expression, recording a failure at `path`.
pub(super) fn compile_condition(
    source: Option<&str>,
    path: impl Into<String>,
    issues: &mut Issues,
) -> Option<Condition> {
    match Condition::compile(source?) {
        Ok(c) => Some(c),
        Err(e) => {
            issues.push(path, e);
            None
        }
    }
}

/// Parses one pattern entry: `"/path"`, `["/path", METHOD | [METHODS]]` or `{regex, methods}`.
pub(super) fn pattern_spec(value: Value, path: &str, issues: &mut Issues) -> Option<PatternSpec> {
    match value {
        Value::String(s) => Some(PatternSpec {
            kind: PatternKind::Path(s),
            methods: None,
        }),
        Value::Sequence(mut pair) => {
            if pair.len() != 2 {
                issues.push(path, "a pattern pair is [path, method or [methods]]");
                return None;
            }
            let methods = pair
                .pop()
                .and_then(|m| de_value::<StringOrList>(m, &format!("{path}[1]"), issues))?;
            let p = pair.pop()?;
            let kind = match p {
                Value::String(s) => PatternKind::Path(s),
                Value::Mapping(_) => {
                    let r = de_value::<RawRegexPattern>(p, &format!("{path}[0]"), issues)?;
                    PatternKind::Regex(r.regex)
                }
                _ => {
                    issues.push(
                        format!("{path}[0]"),
                        "must be a path pattern or {regex: ...}",
                    );
                    return None;
                }
            };
            Some(PatternSpec {
                kind,
                methods: Some(methods_upper(methods.into_vec(), path, issues)),
            })
        }
        v @ Value::Mapping(_) => {
            let r = de_value::<RawRegexPattern>(v, path, issues)?;
            let methods = r.methods.map(|m| methods_upper(m.into_vec(), path, issues));
            Some(PatternSpec {
                kind: PatternKind::Regex(r.regex),
                methods,
            })
        }
        _ => {
            issues.push(
                path,
                "must be a path pattern, [path, methods] or {regex: ...}",
            );
            None
        }
    }
}

/// Compiles a pattern list (`default` when absent), keeping the entries as compiled in `specs`.
pub(super) fn pattern_list(
    values: Option<Vec<Value>>,
    default: &[&str],
    path: &str,
    case: CaseMode,
    issues: &mut Issues,
    specs_out: &mut Vec<PatternSpec>,
) -> Option<PatternSet> {
    let specs: Vec<PatternSpec> = match values {
        None => default
            .iter()
            .map(|s| PatternSpec {
                kind: PatternKind::Path((*s).into()),
                methods: None,
            })
            .collect(),
        Some(vs) => {
            let n = vs.len();
            let specs: Vec<PatternSpec> = vs
                .into_iter()
                .enumerate()
                .filter_map(|(i, v)| pattern_spec(v, &format!("{path}[{i}]"), issues))
                .collect();
            if specs.len() != n {
                return None;
            }
            specs
        }
    };
    let compiled = match PatternSet::compile(&specs, case) {
        Ok(set) => Some(set),
        Err(errs) => {
            for (i, e) in errs {
                issues.push(format!("{path}[{i}]"), e.to_string());
            }
            None
        }
    };
    *specs_out = specs;
    compiled
}

pub(super) fn compile_auth(
    raw: RawAuth,
    provider_names: &[String],
    issues: &mut Issues,
) -> Option<AuthConfig> {
    let (mut protected_specs, mut public_specs) = (Vec::new(), Vec::new());
    let protected = pattern_list(
        raw.protected,
        &["/api/*"],
        "auth.protected",
        CaseMode::Insensitive,
        issues,
        &mut protected_specs,
    );
    let public = pattern_list(
        raw.public,
        &["/health"],
        "auth.public",
        CaseMode::Sensitive,
        issues,
        &mut public_specs,
    );
    let header = raw.token.header.unwrap_or_else(|| "Authorization".into());
    if header.is_empty()
        || !header
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        issues.push("auth.token.header", "not a header name");
    }
    let header_name = poem::http::HeaderName::from_bytes(header.as_bytes())
        .unwrap_or(poem::http::header::AUTHORIZATION);
    let token = TokenConfig {
        header,
        header_name,
        query: raw.token.query,
        cookie: raw.token.cookie,
    };
    let authorize = compile_condition(raw.authorize.as_deref(), "auth.authorize", issues);

    let mut rules = Vec::new();
    let mut specs = Vec::new();
    let mut rule_of_spec = Vec::new();
    // The rule's place in the file, for messages: a refused rule is not kept, so the kept
    // rules' numbers can differ from it.
    let mut entry_of_spec = Vec::new();
    for (i, value) in raw.rules.into_iter().enumerate() {
        let path = format!("auth.rules[{i}]");
        let Some(rule) = de_value::<RawRule>(value, &path, issues) else {
            continue;
        };
        let methods = rule
            .methods
            .map(|m| methods_upper(m.into_vec(), &format!("{path}.methods"), issues));
        let kinds: Vec<PatternKind> = match rule.path {
            None | Some(Value::Null) => vec![PatternKind::Path("/*".into())],
            Some(Value::String(s)) => vec![PatternKind::Path(s)],
            Some(Value::Sequence(items)) => items
                .into_iter()
                .enumerate()
                .filter_map(|(j, v)| match v {
                    Value::String(s) => Some(PatternKind::Path(s)),
                    other => {
                        let r = de_value::<RawRegexPattern>(
                            other,
                            &format!("{path}.path[{j}]"),
                            issues,
                        )?;
                        Some(PatternKind::Regex(r.regex))
                    }
                })
                .collect(),
            Some(other) => {
                match de_value::<RawRegexPattern>(other, &format!("{path}.path"), issues) {
                    Some(r) => vec![PatternKind::Regex(r.regex)],
                    None => continue,
                }
            }
        };
        let condition = compile_condition(
            rule.condition.as_deref(),
            format!("{path}.condition"),
            issues,
        );
        if let Some(names) = &rule.providers {
            provider_list(names, provider_names, &format!("{path}.providers"), issues);
        }
        for kind in kinds {
            specs.push(PatternSpec {
                kind,
                methods: methods.clone(),
            });
            rule_of_spec.push(rules.len());
            entry_of_spec.push(i);
        }
        rules.push(Rule {
            condition,
            providers: rule.providers,
            allow: rule.allow,
        });
    }
    let rule_paths = match PatternSet::compile(&specs, CaseMode::Insensitive) {
        Ok(s) => Some(s),
        Err(errs) => {
            for (i, e) in errs {
                let rule = entry_of_spec.get(i).copied().unwrap_or(0);
                issues.push(format!("auth.rules[{rule}].path"), e.to_string());
            }
            None
        }
    };
    Some(AuthConfig {
        protected: protected?,
        public: public?,
        protected_src: protected_specs.iter().map(describe).collect(),
        public_src: public_specs.iter().map(describe).collect(),
        token,
        authorize,
        rules,
        rule_paths: rule_paths?,
        rule_of_spec,
        public_specs,
        rule_specs: specs,
    })
}
