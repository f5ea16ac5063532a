//! Authorization by organization membership, scoped to the organization a token is for: what the
//! WorkOS and Clerk plugins share, for any provider whose users belong to organizations.
//!
//! Two config options: `organization: token | any` and `organizations: [ids]`. With `token` (the
//! default) a membership counts only in the organization the token names (`org_id`, or `o.id`),
//! and a token that names none is not authorized; with `any`, a membership anywhere counts (a user
//! who can create an organization of their own then passes). `organizations` narrows either.
//!
//! The host keeps a plugin's `authorize` answers per subject **and** the token's organization
//! (`org_id`, else `o.id`), so an answer for one organization is never reused for another.
//!
//! ```
//! use portcullis_plugin_api::organization::{OrganizationPolicy, Target};
//! let policy = OrganizationPolicy::new(None, None).unwrap();
//! let claims = serde_json::json!({"sub": "u1", "org_id": "org_a"});
//! let target = policy.target(claims.as_object().unwrap());
//! assert_eq!(target, Target::Org("org_a".into()));
//! assert!(policy.counts(&target, Some("org_a")));
//! assert!(!policy.counts(&target, Some("org_b")));
//! ```

use serde_json::{Map, Value};

use crate::PluginError;

/// Which organization's membership counts (`organization:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The organization the token is for; a token for none is not authorized (the default).
    Token,
    /// A membership in any organization.
    Any,
}

/// What a token may be authorized by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Nothing: the token names no organization (or not clearly), or one outside
    /// `organizations`.
    Refuse,
    /// A membership in this organization.
    Org(String),
    /// A membership in any organization (of `organizations`, when set).
    Any,
}

/// `organization:` and `organizations:` of a provider's config, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrganizationPolicy {
    scope: Scope,
    allowed: Option<Vec<String>>,
}

impl OrganizationPolicy {
    /// The policy the two options choose, or a one-line configuration error naming the key.
    pub fn new(
        organization: Option<&str>,
        organizations: Option<&[String]>,
    ) -> Result<OrganizationPolicy, PluginError> {
        let scope = match organization {
            None | Some("token") => Scope::Token,
            Some("any") => Scope::Any,
            Some(_) => {
                return Err(PluginError::config(
                    "organization: must be `token` (the default: the token's own org_id or o.id) or `any`",
                ))
            }
        };
        if organizations.is_some_and(|o| o.is_empty() || o.iter().any(String::is_empty)) {
            return Err(PluginError::config(
                "organizations: list at least one organization id, or leave it out",
            ));
        }
        Ok(OrganizationPolicy {
            scope,
            allowed: organizations.map(<[String]>::to_vec),
        })
    }

    /// The scope chosen.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// What a token with `claims` may be authorized by.
    pub fn target(&self, claims: &Map<String, Value>) -> Target {
        match self.scope {
            Scope::Any => Target::Any,
            Scope::Token => match token_organization(claims) {
                Ok(Some(o)) if self.allowed.as_ref().is_none_or(|a| a.contains(&o)) => {
                    Target::Org(o)
                }
                _ => Target::Refuse,
            },
        }
    }

    /// Whether a membership in `membership_org` (`None`: the membership does not say) counts
    /// for `target`.
    pub fn counts(&self, target: &Target, membership_org: Option<&str>) -> bool {
        match target {
            Target::Refuse => false,
            Target::Org(o) => membership_org == Some(o.as_str()),
            Target::Any => match &self.allowed {
                None => true,
                Some(a) => membership_org.is_some_and(|m| a.iter().any(|x| x == m)),
            },
        }
    }

    /// Whether any membership at all counts for `target` (`any`, no `organizations`).
    pub fn any_membership_counts(&self, target: &Target) -> bool {
        *target == Target::Any && self.allowed.is_none()
    }
}

/// The organization a token is for: `org_id` (WorkOS, Clerk's version-1 claims) or `o.id`
/// (Clerk's version 2). `Err` when the claims are malformed or name two different organizations:
/// such a token is for no organization that could be checked.
fn token_organization(claims: &Map<String, Value>) -> Result<Option<String>, ()> {
    let id = |v: Option<&Value>| match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(()),
    };
    let v1 = id(claims.get("org_id"))?;
    let v2 = match claims.get("o") {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => id(o.get("id"))?,
        Some(_) => return Err(()),
    };
    match (v1, v2) {
        (Some(a), Some(b)) if a != b => Err(()),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_token_organization_is_org_id_or_o_id_and_never_ambiguous() {
        let t = |v| token_organization(&claims(v));
        assert_eq!(t(json!({"org_id": "a"})), Ok(Some("a".into())));
        assert_eq!(t(json!({"o": {"id": "a"}})), Ok(Some("a".into())));
        assert_eq!(
            t(json!({"org_id": "a", "o": {"id": "a"}})),
            Ok(Some("a".into()))
        );
        assert_eq!(t(json!({})), Ok(None));
        assert_eq!(t(json!({"org_id": "a", "o": {"id": "b"}})), Err(()));
        assert_eq!(t(json!({"org_id": 7})), Err(()));
        assert_eq!(t(json!({"org_id": ""})), Err(()));
        assert_eq!(t(json!({"o": "a"})), Err(()));
    }

    #[test]
    fn scope_is_token_by_default_and_unknown_values_are_refused() {
        assert_eq!(
            OrganizationPolicy::new(None, None).unwrap().scope(),
            Scope::Token
        );
        assert_eq!(
            OrganizationPolicy::new(Some("any"), None).unwrap().scope(),
            Scope::Any
        );
        for bad in ["Any", "all", ""] {
            let e = OrganizationPolicy::new(Some(bad), None).unwrap_err();
            assert!(e.message().starts_with("organization: must be"), "{bad}");
        }
        let e = OrganizationPolicy::new(None, Some(&[])).unwrap_err();
        assert!(e.message().starts_with("organizations:"));
    }

    #[test]
    fn a_membership_counts_only_where_the_policy_says() {
        let token = OrganizationPolicy::new(None, None).unwrap();
        let t = token.target(&claims(json!({"org_id": "a"})));
        assert!(token.counts(&t, Some("a")));
        assert!(!token.counts(&t, Some("b")));
        assert!(!token.counts(&t, None));
        assert_eq!(token.target(&claims(json!({}))), Target::Refuse);
        assert!(!token.counts(&Target::Refuse, Some("a")));

        let listed = ["a".to_string()];
        let narrowed = OrganizationPolicy::new(None, Some(&listed)).unwrap();
        assert_eq!(
            narrowed.target(&claims(json!({"org_id": "b"}))),
            Target::Refuse
        );

        let any = OrganizationPolicy::new(Some("any"), None).unwrap();
        let t = any.target(&claims(json!({})));
        assert!(any.counts(&t, Some("z")) && any.any_membership_counts(&t));
        let any_listed = OrganizationPolicy::new(Some("any"), Some(&listed)).unwrap();
        assert!(any_listed.counts(&t, Some("a")));
        assert!(!any_listed.counts(&t, Some("z")));
        assert!(!any_listed.any_membership_counts(&t));
    }
}
