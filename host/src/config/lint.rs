//! Warnings: what a valid config says that can never take effect. A pattern or rule that never
//! applies is almost always a mistake (the author meant it to apply), but the config does what it
//! says, so it is served; `check` prints the warnings and a reload logs and returns them.
//!
//! Each warning is proved, never guessed: a pattern is reported only when another one provably
//! takes every request it matches (see [`PatternSpec::covers`], which answers "no" whenever it
//! cannot tell, for instance for most regexes). So a warning-free config may still hold a dead
//! pattern, but a warning is never a false alarm.
//!
//! What is found:
//! * an `auth.public` entry that never applies: every request it matches is
//!   - under a built-in route that always needs a user (`/api/auth/*`, `/api/admin/*`),
//!   - matched by an earlier `auth.public` entry already, or
//!   - served by a route (`routes:`), whose `requires_auth` decides alone;
//! * an `auth.rules` entry (or one path of its list) that never decides: an earlier rule with no
//!   condition, about the same users or more, matches every request it does;
//! * a `routes:` entry that never serves a request: an earlier route matches every request it
//!   does, or it lies under a built-in route.

use super::{
    auth::AuthConfig,
    compile::routes::{RouteConfig, RoutesConfig, RESERVED_PATHS},
    de::describe,
    error::ConfigIssue,
};
use crate::matching::{CaseMode, PatternKind, PatternSpec};

/// The built-in routes that always need a user, whatever `auth.public` and `routes:` say (as
/// `auth::decide` has them).
const BUILTIN: [&str; 2] = ["/api/auth/*", "/api/admin/*"];

/// Every warning of a compiled config, in the order of the file.
pub(super) fn warnings(auth: &AuthConfig, routes: &RoutesConfig) -> Vec<ConfigIssue> {
    let mut out = Vec::new();
    dead_public_patterns(auth, routes, &mut out);
    shadowed_rules(auth, &mut out);
    dead_routes(routes, &mut out);
    out
}

fn warn(out: &mut Vec<ConfigIssue>, path: String, message: String) {
    out.push(ConfigIssue { path, message });
}

/// The built-in route that takes every request `spec` (in `case`) matches, if one does.
fn builtin_cover(spec: &PatternSpec, case: CaseMode) -> Option<&'static str> {
    BUILTIN
        .into_iter()
        .find(|b| PatternSpec::path(*b).covers(CaseMode::Insensitive, spec, case))
}

/// A route as the pattern it is matched with: any case when it needs a user, exact otherwise.
fn route_spec(route: &RouteConfig) -> (PatternSpec, CaseMode) {
    let spec = PatternSpec {
        kind: PatternKind::Path(route.path.clone()),
        methods: route.methods.clone(),
    };
    let case = if route.requires_auth {
        CaseMode::Insensitive
    } else {
        CaseMode::Sensitive
    };
    (spec, case)
}

fn dead_public_patterns(auth: &AuthConfig, routes: &RoutesConfig, out: &mut Vec<ConfigIssue>) {
    let case = CaseMode::Sensitive;
    for (i, spec) in auth.public_specs.iter().enumerate() {
        let at = format!("auth.public[{i}]");
        if let Some(b) = builtin_cover(spec, case) {
            warn(
                out,
                at,
                format!("never applies: `{b}` is a built-in route that always needs a user; take it out"),
            );
            continue;
        }
        if let Some(j) = auth.public_specs[..i]
            .iter()
            .position(|earlier| earlier.covers(case, spec, case))
        {
            warn(
                out,
                at,
                format!(
                    "never applies: auth.public[{j}] (`{}`) already matches every request it does; take it out",
                    describe(&auth.public_specs[j])
                ),
            );
            continue;
        }
        // The server answers its own paths (`/health`, ...) whatever the routes say: a pattern
        // that may match one of them is not taken whole by a route.
        let reserved = RESERVED_PATHS
            .iter()
            .any(|r| spec.may_match_below(case, r.trim_start_matches('/')));
        if reserved {
            continue;
        }
        let covering = routes.list.iter().enumerate().find(|(_, r)| {
            let (route, route_case) = route_spec(r);
            route.covers(route_case, spec, case)
        });
        if let Some((k, r)) = covering {
            let what = if r.requires_auth {
                "here true: a user is needed); take it out, or set `requires_auth: false` on the route"
            } else {
                "here false: open already); take it out"
            };
            warn(
                out,
                at,
                format!(
                    "never applies: routes[{k}] (`{}`) matches every request it does, and a route's `requires_auth` decides alone ({what}",
                    describe(&route_spec(r).0)
                ),
            );
        }
    }
}

/// Whether a rule about the users of `earlier` (`None`: every provider's) is about every user a
/// rule with `later` is about.
fn providers_cover(earlier: Option<&[String]>, later: Option<&[String]>) -> bool {
    match (earlier, later) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(e), Some(l)) => l.iter().all(|n| e.contains(n)),
    }
}

fn shadowed_rules(auth: &AuthConfig, out: &mut Vec<ConfigIssue>) {
    let case = CaseMode::Insensitive;
    // The specs of each rule, in order (`rule_of_spec` is ascending).
    let specs_of = |rule: usize| {
        auth.rule_specs
            .iter()
            .zip(&auth.rule_of_spec)
            .filter(move |(_, r)| **r == rule)
            .map(|(s, _)| s)
    };
    for (j, rule) in auth.rules.iter().enumerate() {
        // The earlier rule that decides first for each of this rule's paths, if one does.
        let shadows: Vec<Option<usize>> = specs_of(j)
            .map(|spec| {
                auth.rules[..j].iter().enumerate().position(|(i, earlier)| {
                    earlier.condition.is_none()
                        && providers_cover(earlier.providers.as_deref(), rule.providers.as_deref())
                        && specs_of(i).any(|e| e.covers(case, spec, case))
                })
            })
            .collect();
        if shadows.is_empty() {
            continue;
        }
        let name = |i: usize| {
            let first = specs_of(i).next().map(describe).unwrap_or_default();
            format!("auth.rules[{i}] (`{first}`)")
        };
        // Said only when the earlier rules name providers: otherwise they are about every user.
        let named = |by: &[usize]| by.iter().any(|&i| auth.rules[i].providers.is_some());
        if shadows.iter().all(Option::is_some) {
            let mut by: Vec<usize> = shadows.iter().flatten().copied().collect();
            by.sort_unstable();
            by.dedup();
            let what = match (by.len(), named(&by)) {
                (1, false) => "comes first, has no condition and matches every request this rule does",
                (1, true) => "comes first, has no condition, names every provider this rule does and matches every request it does",
                (_, false) => "come first, have no condition and between them match every request this rule does",
                (_, true) => "come first, have no condition, name every provider this rule does and between them match every request it does",
            };
            let by: Vec<String> = by.into_iter().map(name).collect();
            warn(
                out,
                format!("auth.rules[{j}]"),
                format!(
                    "never decides: {} {what}; move this rule above, or take it out",
                    by.join(" and ")
                ),
            );
        } else {
            // Some paths of the list only: those entries are dead.
            for (k, by) in shadows.iter().enumerate() {
                if let Some(i) = *by {
                    let what = if named(&[i]) {
                        "comes first, has no condition, names every provider this rule does and matches every request this path does"
                    } else {
                        "comes first, has no condition and matches every request this path does"
                    };
                    warn(
                        out,
                        format!("auth.rules[{j}].path[{k}]"),
                        format!(
                            "never decides for this path: {} {what}; take it out of the list, or move the rule above",
                            name(i)
                        ),
                    );
                }
            }
        }
    }
}

fn dead_routes(routes: &RoutesConfig, out: &mut Vec<ConfigIssue>) {
    for (j, route) in routes.list.iter().enumerate() {
        let (spec, case) = route_spec(route);
        let at = format!("routes[{j}]");
        if let Some(b) = builtin_cover(&spec, case) {
            warn(
                out,
                at,
                format!("never serves a request: `{b}` is a built-in route, answered by the server itself; move the route elsewhere"),
            );
            continue;
        }
        let earlier = routes.list[..j].iter().position(|r| {
            let (e, e_case) = route_spec(r);
            e.covers(e_case, &spec, case)
        });
        if let Some(i) = earlier {
            warn(
                out,
                at,
                format!(
                    "never serves a request: routes[{i}] (`{}`) comes first and matches every request this route does; move this route above it, or take it out",
                    describe(&route_spec(&routes.list[i]).0)
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use crate::config::{compile_str, EnvVars};

    /// The warnings of a config whose `auth:` and `routes:` are `rest`, as `path: message` lines.
    fn warnings(rest: &str) -> Vec<String> {
        let text = format!(
            "version: 1\nproviders:\n  - {{ name: a, plugin: jwt }}\n  - {{ name: b, plugin: jwt }}\n{rest}"
        );
        let vars = EnvVars {
            dev_secret: &|| Err("unused".into()),
        };
        let c = compile_str(&text, std::path::Path::new("c.yaml"), &vars)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        c.warnings.iter().map(ToString::to_string).collect()
    }

    fn paths(rest: &str) -> Vec<String> {
        warnings(rest)
            .into_iter()
            .map(|w| w.split(": ").next().unwrap_or_default().to_string())
            .collect()
    }

    const UP: &str = "upstream: http://up.test";

    #[test]
    fn a_public_pattern_a_route_that_needs_a_user_takes_whole_is_dead() {
        let w = warnings(&format!(
            "auth:\n  public: [/health, /vault/open, /open/*]\nroutes:\n  - {{ path: /vault/*, {UP} }}\n"
        ));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("auth.public[1]: never applies"), "{w:?}");
        assert!(
            w[0].contains("routes[0]") && w[0].contains("requires_auth"),
            "{w:?}"
        );
        // Any spelling: the route needs a user in any case.
        assert_eq!(
            paths(&format!(
                "auth:\n  public: [/VAULT/x]\nroutes:\n  - {{ path: /vault/*, {UP} }}\n"
            )),
            ["auth.public[0]"]
        );
        // A route that opens the paths makes the pattern dead too.
        assert_eq!(
            paths(&format!("auth:\n  public: [/hooks/gh]\nroutes:\n  - {{ path: /hooks/*, requires_auth: false, {UP} }}\n")),
            ["auth.public[0]"]
        );
    }

    #[test]
    fn a_public_pattern_a_route_takes_only_in_part_is_alive() {
        for rest in [
            // Wider than the route.
            format!("auth:\n  public: [/vault/*]\nroutes:\n  - {{ path: /vault/secret, {UP} }}\n"),
            // Methods the route does not serve.
            format!("auth:\n  public: [/vault/open]\nroutes:\n  - {{ path: /vault/*, methods: [POST], {UP} }}\n"),
            format!("auth:\n  public: [[/vault/open, [GET, PUT]]]\nroutes:\n  - {{ path: /vault/*, methods: [GET], {UP} }}\n"),
            // A route that opens its paths matches them exactly: other spellings are not its.
            format!("auth:\n  public: [/Hooks/gh]\nroutes:\n  - {{ path: /hooks/*, requires_auth: false, {UP} }}\n"),
            // The server's own paths are never a route's.
            format!("auth:\n  public: [/health, /metrics]\nroutes:\n  - {{ path: /*, {UP} }}\n"),
            format!("auth:\n  public: [\"/:page\"]\nroutes:\n  - {{ path: /*, {UP} }}\n"),
            // A regex is not proved dead.
            format!("auth:\n  public: [{{ regex: \"^/vault/open$\" }}]\nroutes:\n  - {{ path: /vault/*, {UP} }}\n"),
            // Routes split the paths between them: neither takes the pattern whole.
            format!("auth:\n  public: [\"/x/:id\"]\nroutes:\n  - {{ path: /x/a, {UP} }}\n  - {{ path: /x/b, {UP} }}\n"),
        ] {
            assert_eq!(warnings(&rest), Vec::<String>::new(), "{rest}");
        }
    }

    #[test]
    fn public_patterns_under_the_built_in_routes_or_an_earlier_pattern_are_dead() {
        assert_eq!(
            paths("auth:\n  public: [/api/admin/status, /api/Auth/me, /api/health]\n"),
            ["auth.public[0]", "auth.public[1]"]
        );
        assert_eq!(
            paths("auth:\n  public: [/docs/*, /docs/intro, [/docs, GET], /doc, /docs2]\n"),
            ["auth.public[1]", "auth.public[2]"]
        );
        // Narrower first, wider after: both apply (the wider one to more paths).
        assert_eq!(
            paths("auth:\n  public: [/docs/intro, /docs/*]\n"),
            Vec::<String>::new()
        );
        // The defaults say nothing.
        assert_eq!(paths(""), Vec::<String>::new());
    }

    #[test]
    fn a_rule_behind_an_unconditional_wider_one_never_decides() {
        let w = warnings(
            "auth:\n  rules:\n    - { path: /api/*, allow: true }\n    - { path: /api/admin/*, condition: \"user.role == 'admin'\", allow: true }\n",
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("auth.rules[1]: never decides: auth.rules[0] (`/api/*`)"),
            "{w:?}"
        );
        // A rule with no path is about every path.
        assert_eq!(
            paths("auth:\n  rules:\n    - allow: false\n    - { path: /x, allow: true }\n"),
            ["auth.rules[1]"]
        );
        // Methods: GET names HEAD; ALL names every method.
        assert_eq!(
            paths("auth:\n  rules:\n    - { path: /x, methods: [GET], allow: false }\n    - { path: /x, methods: [HEAD], allow: true }\n    - { path: /x, methods: ALL, allow: true }\n    - { path: /x, methods: [PUT], allow: true }\n"),
            ["auth.rules[1]", "auth.rules[3]"]
        );
        // One path of a list.
        assert_eq!(
            paths("auth:\n  rules:\n    - { path: /a/*, allow: true }\n    - { path: [/b, /a/c], allow: false }\n"),
            ["auth.rules[1].path[1]"]
        );
        // Two earlier rules between them.
        let w = warnings("auth:\n  rules:\n    - { path: /a/*, allow: true }\n    - { path: /b/*, allow: true }\n    - { path: [/b/x, /a/x], allow: false }\n");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "auth.rules[2]: never decides: auth.rules[0] (`/a/*`) and auth.rules[1] (`/b/*`)"
            ),
            "{w:?}"
        );
    }

    #[test]
    fn a_rule_an_earlier_one_decides_only_sometimes_for_is_alive() {
        for rest in [
            // The earlier rule has a condition.
            "auth:\n  rules:\n    - { path: /api/*, condition: \"user.role == 'admin'\", allow: true }\n    - { path: /api/*, allow: false }\n",
            // The earlier rule is about fewer users.
            "auth:\n  rules:\n    - { path: /api/*, providers: [a], allow: true }\n    - { path: /api/x, allow: false }\n",
            "auth:\n  rules:\n    - { path: /api/*, providers: [a], allow: true }\n    - { path: /api/x, providers: [a, b], allow: false }\n",
            // Narrower, or other methods.
            "auth:\n  rules:\n    - { path: /api/x, allow: true }\n    - { path: /api/*, allow: false }\n",
            "auth:\n  rules:\n    - { path: /x, methods: [GET], allow: true }\n    - { path: /x, allow: false }\n",
            // A regex the earlier one does not provably take.
            "auth:\n  rules:\n    - { path: /api/*, allow: true }\n    - { path: { regex: \"^/api/\" }, allow: false }\n",
            // The default config's admin rule.
            "auth:\n  rules:\n    - { path: /api/admin/*, condition: \"user.role == 'admin'\", allow: true }\n    - { path: /api/*, allow: true }\n",
        ] {
            assert_eq!(warnings(rest), Vec::<String>::new(), "{rest}");
        }
        // The earlier rule is about every user the later one is about.
        assert_eq!(
            paths("auth:\n  rules:\n    - { path: /api/*, providers: [a, b], allow: true }\n    - { path: /api/x, providers: [b], allow: false }\n"),
            ["auth.rules[1]"]
        );
    }

    #[test]
    fn a_route_behind_a_wider_one_or_under_a_built_in_route_never_serves() {
        assert_eq!(
            paths(&format!(
                "routes:\n  - {{ path: /orders/*, {UP} }}\n  - {{ path: /orders/:id, {UP} }}\n  - {{ path: /api/admin/x, {UP} }}\n  - {{ path: /stock/*, {UP} }}\n"
            )),
            ["routes[1]", "routes[2]"]
        );
        for rest in [
            // Other methods, each its own route.
            format!("routes:\n  - {{ path: /mixed, methods: [GET], requires_auth: false, {UP} }}\n  - {{ path: /mixed, methods: [POST], {UP} }}\n  - {{ path: /mixed, methods: [PUT], {UP} }}\n"),
            // Narrower first.
            format!("routes:\n  - {{ path: /orders/:id, {UP} }}\n  - {{ path: /orders/*, {UP} }}\n"),
            // An open route matches its exact spelling; a later one that needs a user takes the rest.
            format!("routes:\n  - {{ path: /files/*, requires_auth: false, {UP} }}\n  - {{ path: /files/*, {UP} }}\n"),
        ] {
            assert_eq!(warnings(&rest), Vec::<String>::new(), "{rest}");
        }
        // The other way round, the open route is dead: the first takes every spelling.
        assert_eq!(
            paths(&format!("routes:\n  - {{ path: /files/*, {UP} }}\n  - {{ path: /files/*, requires_auth: false, {UP} }}\n")),
            ["routes[1]"]
        );
    }

    #[test]
    fn the_shipped_style_config_has_no_warning() {
        let rest = format!(
            "auth:\n  protected: [/api/*]\n  public: [/health, /api/health, /webhooks/*]\n  rules:\n    - path: [/api/admin/*, /admin-area/*]\n      condition: \"user.role == 'admin'\"\n      allow: true\n    - path: [/api/admin/*, /admin-area/*]\n      allow: false\n    - allow: true\nroutes:\n  - {{ path: /webhooks/github, methods: [POST], requires_auth: false, {UP} }}\n  - {{ path: /secure/*, {UP} }}\n  - {{ path: /webhooks/private, {UP} }}\n"
        );
        assert_eq!(warnings(&rest), Vec::<String>::new());
    }

    #[test]
    fn a_middleware_that_can_never_run_is_warned_about() {
        let mw = "middleware:\n  - { name: limit, plugin: ratelimit }\n  - { name: open, plugin: ratelimit, public: true }\n  - { name: idle, plugin: ratelimit }\n";
        let routes = format!(
            "routes:\n  - {{ path: /shop/*, requires_auth: false, middleware: [limit, open], {UP} }}\n  - {{ path: /api/*, middleware: [limit], {UP} }}\n"
        );
        let got = warnings(&format!("{mw}{routes}"));
        assert!(
            got.iter().any(|w| w.starts_with("routes[0].middleware[0]:")
                && w.contains("`limit` never runs here")),
            "{got:?}"
        );
        // `open` runs on the public route; `limit` runs on the protected one.
        assert!(
            !got.iter().any(|w| w.starts_with("routes[0].middleware[1]")),
            "{got:?}"
        );
        assert!(!got.iter().any(|w| w.starts_with("routes[1]")), "{got:?}");
        // No path and no route: it never runs at all.
        assert!(
            got.iter()
                .any(|w| w.starts_with("middleware[2]:") && w.contains("never runs")),
            "{got:?}"
        );
    }
}
