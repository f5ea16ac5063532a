//! Compiled, indexed sets of path patterns.
//!
//! # Pattern semantics
//!
//! A pattern is a path pattern (`"/api/*"`), a path pattern with methods (`["/api/login", "POST"]`), or a
//! regex (`{regex: "^/public/.*"}`, optionally with methods). Patterns are matched against the **canonical**
//! request path (the output of `canonicalize`), never the raw one, and never the query string.
//!
//! **Path patterns**
//! * A pattern must be non-empty and start with `/`. It is split into segments on `/`.
//! * A literal segment matches exactly that segment. Literals are normalized like request paths (escapes of
//!   unreserved characters decoded, other escapes upper-cased, raw non-ASCII percent-encoded), so
//!   `/%7Euser` and `/~user` are the same pattern.
//! * `:name` matches exactly one non-empty segment (`name` is letters, digits and `_`; nothing is captured).
//! * A segment that is exactly `*`:
//!   - as the **last** segment, matches the rest of the path: zero or more segments. `/api/*` matches `/api`,
//!     `/api/`, `/api/x` and `/api/x/y`; `/*` matches every path.
//!   - anywhere else, matches exactly one non-empty segment (like `:name`).
//! * Compile errors: `*` or `:` inside a literal segment (`/api*`, `/a:b`; use a regex for paths that contain
//!   a literal `:`), an empty pattern, a pattern not starting with `/`, an empty segment (`/a//b`), a `.` or
//!   `..` segment, an invalid parameter name (`:`, `:id?`, `:id.json`), more than [`MAX_PATTERN_SEGMENTS`]
//!   segments, and segments that would be rejected in a request path (`%2F`, `\`, control characters, …).
//! * Trailing slash: a pattern matches the path with or without one trailing slash (`/health` matches
//!   `/health` and `/health/`). One trailing slash on the pattern itself is ignored (`/health/` ≡ `/health`).
//!   The root pattern `/` matches only `/`.
//!
//! **Regex patterns** are compiled with the `regex` crate (Rust syntax, not JavaScript) and searched in the
//! canonical path; they are **unanchored** unless the regex anchors itself (`^…$`), as in Mastra. Each regex
//! is limited to [`MAX_REGEX_LEN`] bytes of source and to bounded compiled / DFA sizes, so a hostile
//! configuration cannot exhaust memory.
//!
//! **Methods** are HTTP method names; they are upper-cased when compiled. `ALL` or `*` in the list means any
//! method — a deliberate departure from Mastra, where `'ALL'` was not special in patterns and only matched
//! a request whose method was literally `ALL`. No method list means any method. An empty method list is a
//! compile error (in Mastra it silently never matched).
//!
//! **Case** — each set is compiled with a [`CaseMode`]:
//! * [`CaseMode::Insensitive`] folds ASCII case in literals and in the path (regexes are compiled
//!   case-insensitively, like `(?i)`), and compares request methods ignoring ASCII case. Use it for patterns
//!   that *require* authentication (protected paths, rules): `/API/admin` is still protected by `/api/*`.
//! * [`CaseMode::Sensitive`] compares literals, regexes and methods exactly. Use it for patterns that *open*
//!   a path (public paths): `/HEALTH` is not made public by `/health`.
//!
//! Either way a case mismatch fails closed. (Mastra's modern matcher was case-insensitive for every pattern;
//! its classic matcher was case-sensitive for every pattern.)
//!
//! # Indexing
//!
//! Path patterns live in a segment trie (sorted literal children, scanned when there are a few and
//! searched by binary search when there are more, one
//! "one segment" child shared by `:name` and mid-pattern `*`, and per-node lists of patterns that end there
//! or that end with a trailing `*` there), so a lookup visits at most one trie node per path segment and
//! pattern prefix, independent of the number of patterns. Regex patterns are searched in one pass with a
//! `regex::RegexSet`. Results are filtered by method and reported by specification index.

use std::cmp::Ordering;

use regex::{RegexBuilder, RegexSet, RegexSetBuilder};
use thiserror::Error;

use super::canonical::{canonical_segment, PathError};

/// Most segments a path pattern may have.
pub const MAX_PATTERN_SEGMENTS: usize = 128;
/// Longest accepted regex source, in bytes.
pub const MAX_REGEX_LEN: usize = 4096;
/// Compiled-size limit for one regex.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Compiled-size limit for all regexes of a set together.
const REGEX_SET_SIZE_LIMIT: usize = 16 << 20;
/// Lazy-DFA cache limit per regex (set).
const REGEX_DFA_SIZE_LIMIT: usize = 2 << 20;

/// The indices of the patterns matching a path, in ascending order. A path matches a handful of
/// patterns, whatever the size of the set: they are held inline, not allocated.
pub type Hits = smallvec::SmallVec<[usize; 8]>;

/// How literals, paths, regexes and methods are compared. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseMode {
    /// Exact comparison. For patterns that open a path (public paths).
    Sensitive,
    /// ASCII case folding. For patterns that require authentication (protected paths, rules).
    Insensitive,
}

/// One pattern as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternSpec {
    /// The path or regex.
    pub kind: PatternKind,
    /// HTTP methods the pattern applies to; `None` (or a list containing `ALL` or `*`) means any method.
    pub methods: Option<Vec<String>>,
}

/// The path part of a [`PatternSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternKind {
    /// A path pattern such as `/api/*` or `/users/:id`.
    Path(String),
    /// A regex searched in the canonical path.
    Regex(String),
}

impl PatternSpec {
    /// A path pattern for any method.
    pub fn path(pattern: impl Into<String>) -> Self {
        Self {
            kind: PatternKind::Path(pattern.into()),
            methods: None,
        }
    }

    /// A regex pattern for any method.
    pub fn regex(regex: impl Into<String>) -> Self {
        Self {
            kind: PatternKind::Regex(regex.into()),
            methods: None,
        }
    }

    /// Restrict the pattern to the given methods.
    pub fn with_methods<I, S>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.methods = Some(methods.into_iter().map(Into::into).collect());
        self
    }
}

/// Why a pattern did not compile. Reported together with the pattern's index.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PatternError {
    #[error("path pattern is empty")]
    Empty,
    #[error("path pattern must start with '/'")]
    NotAbsolute,
    #[error("path pattern has an empty segment ('//')")]
    EmptySegment,
    #[error("path pattern has a '.' or '..' segment")]
    DotSegment,
    #[error("'*' and ':' must be a whole segment ('*' or ':name'); found inside segment {0:?}")]
    WildcardInSegment(String),
    #[error("invalid parameter segment {0:?} (expected ':' followed by letters, digits or '_')")]
    InvalidParam(String),
    #[error("path pattern has more than {MAX_PATTERN_SEGMENTS} segments")]
    TooManySegments,
    #[error("path pattern segment is not valid in a path: {0}")]
    InvalidSegment(PathError),
    #[error("regex is longer than {MAX_REGEX_LEN} bytes")]
    RegexTooLong,
    #[error("invalid regex: {0}")]
    Regex(String),
    #[error("the regexes of this set together exceed the compiled size limit")]
    RegexSetTooLarge,
    #[error("empty method list (omit the methods to allow any method)")]
    EmptyMethods,
    #[error("invalid HTTP method name {0:?}")]
    InvalidMethod(String),
}

/// An immutable, compiled set of patterns. Cheap to query; `Send + Sync`.
#[derive(Debug, Clone)]
pub struct PatternSet {
    case: CaseMode,
    len: usize,
    /// Method filter of each spec, by spec index.
    methods: Vec<MethodFilter>,
    trie: Node,
    /// Regexes that apply to any method (a plain `is_match` suffices).
    regex_any: Option<RegexGroup>,
    /// Regexes restricted to some methods.
    regex_methods: Option<RegexGroup>,
    /// When every pattern is a literal path (no `*`, `:name` or regex) and there are few: each
    /// one's segments joined by `/` (lower-cased in `Insensitive` sets) with its index. A
    /// request's path is then compared whole, which is what walking the trie would decide.
    literal_paths: Option<Vec<(Box<str>, usize)>>,
}

#[derive(Debug, Clone)]
struct RegexGroup {
    set: RegexSet,
    /// Spec index of each regex of `set`, ascending. Invariant: `indices.len() == set.len()`, so every
    /// position reported by `set.matches` indexes it.
    indices: Vec<usize>,
}

#[derive(Debug, Clone)]
enum MethodFilter {
    Any,
    /// Upper-case method names.
    List(Box<[Box<str>]>),
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Literal children sorted by key (keys are ASCII-lower-cased in `Insensitive` sets).
    literals: Vec<(Box<str>, Node)>,
    /// Child for `:name` and mid-pattern `*`: exactly one non-empty segment.
    one: Option<Box<Node>>,
    /// Patterns that end at this node.
    exact: Vec<usize>,
    /// Patterns whose trailing `*` follows this node: they match zero or more further segments.
    rest: Vec<usize>,
}

enum Seg {
    Literal(String),
    One,
    Rest,
}

impl PatternSet {
    /// Compile `specs` in order; index `i` of the result refers to `specs[i]`. Returns all errors (index and
    /// error, ascending by index; a spec may have more than one), not just the first.
    pub fn compile(
        specs: &[PatternSpec],
        case: CaseMode,
    ) -> Result<PatternSet, Vec<(usize, PatternError)>> {
        let mut errors = Vec::new();
        let mut methods = Vec::with_capacity(specs.len());
        let mut trie = Node::default();
        let mut any_sources = Vec::new();
        let mut any_indices = Vec::new();
        let mut restricted_sources = Vec::new();
        let mut restricted_indices = Vec::new();
        let mut literal_paths = Some(Vec::new());

        for (index, spec) in specs.iter().enumerate() {
            let filter = match compile_methods(spec.methods.as_deref()) {
                Ok(filter) => filter,
                Err(e) => {
                    errors.push((index, e));
                    MethodFilter::Any
                }
            };
            match &spec.kind {
                PatternKind::Path(pattern) => match parse_path_pattern(pattern, case) {
                    Ok(segs) => {
                        literal_paths = literal_paths.and_then(|mut list| {
                            let joined = literal_text(&segs)?;
                            list.push((joined.into_boxed_str(), index));
                            Some(list)
                        });
                        trie.insert(&segs, index)
                    }
                    Err(e) => errors.push((index, e)),
                },
                PatternKind::Regex(source) => match check_regex(source, case) {
                    Ok(()) => {
                        if matches!(filter, MethodFilter::Any) {
                            any_sources.push(source.as_str());
                            any_indices.push(index);
                        } else {
                            restricted_sources.push(source.as_str());
                            restricted_indices.push(index);
                        }
                    }
                    Err(e) => errors.push((index, e)),
                },
            }
            if matches!(spec.kind, PatternKind::Regex(_)) {
                literal_paths = None;
            }
            methods.push(filter);
        }
        let literal_paths = literal_paths.filter(|l| l.len() <= LITERAL_PATHS);

        if !errors.is_empty() {
            return Err(errors);
        }
        let regex_any = build_group(&any_sources, any_indices, case).map_err(|e| vec![e])?;
        let regex_methods =
            build_group(&restricted_sources, restricted_indices, case).map_err(|e| vec![e])?;

        Ok(PatternSet {
            case,
            len: specs.len(),
            methods,
            trie,
            regex_any,
            regex_methods,
            literal_paths,
        })
    }

    /// The case mode this set was compiled with.
    pub fn case_mode(&self) -> CaseMode {
        self.case
    }

    /// Whether any pattern matches `method` and the canonical `path`.
    pub fn is_match(&self, method: &str, path: &str) -> bool {
        if let Some(literals) = &self.literal_paths {
            // As `walk_trie` reads a path: after the leading `/`, without one trailing `/`.
            let Some(body) = path.strip_prefix('/') else {
                return false;
            };
            let body = body.strip_suffix('/').unwrap_or(body);
            return literals.iter().any(|(literal, i)| {
                literal.len() == body.len()
                    && match self.case {
                        CaseMode::Sensitive => **literal == *body,
                        // Literals are lower-case already.
                        CaseMode::Insensitive => literal.eq_ignore_ascii_case(body),
                    }
                    && self.method_ok(*i, method)
            });
        }
        let mut found = false;
        self.walk_trie(path, &mut |indices| {
            found = indices.iter().any(|&i| self.method_ok(i, method));
            found
        });
        if found {
            return true;
        }
        if let Some(group) = &self.regex_any {
            if group.set.is_match(path) {
                return true;
            }
        }
        if let Some(group) = &self.regex_methods {
            // Cheap reject first; only a hit needs to know which regexes matched.
            if group.set.is_match(path) {
                return group
                    .set
                    .matches(path)
                    .iter()
                    .any(|pos| self.method_ok(group.indices[pos], method));
            }
        }
        false
    }

    /// The lowest index whose pattern and method match, if any.
    pub fn first_match(&self, method: &str, path: &str) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut offer = |i: usize| {
            if best.is_none_or(|b| i < b) {
                best = Some(i);
            }
        };
        self.walk_trie(path, &mut |indices| {
            if let Some(&i) = indices.iter().find(|&&i| self.method_ok(i, method)) {
                offer(i);
            }
            false
        });
        for group in [&self.regex_any, &self.regex_methods].into_iter().flatten() {
            if group.set.is_match(path) {
                // `SetMatches::iter` is ascending and `indices` is ascending, so the first hit is the lowest.
                if let Some(i) = group
                    .set
                    .matches(path)
                    .iter()
                    .map(|pos| group.indices[pos])
                    .find(|&i| self.method_ok(i, method))
                {
                    offer(i);
                }
            }
        }
        best
    }

    /// All matching indices in ascending order.
    pub fn matches(&self, method: &str, path: &str) -> Hits {
        let mut out = Hits::new();
        self.walk_trie(path, &mut |indices| {
            out.extend(
                indices
                    .iter()
                    .copied()
                    .filter(|&i| self.method_ok(i, method)),
            );
            false
        });
        for group in [&self.regex_any, &self.regex_methods].into_iter().flatten() {
            if group.set.is_match(path) {
                out.extend(
                    group
                        .set
                        .matches(path)
                        .iter()
                        .map(|pos| group.indices[pos])
                        .filter(|&i| self.method_ok(i, method)),
                );
            }
        }
        // Each spec index is in exactly one place (one trie list or one regex), so there are no duplicates.
        out.sort_unstable();
        out
    }

    /// Number of patterns (specs) in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set has no patterns.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn method_ok(&self, index: usize, method: &str) -> bool {
        match self.methods.get(index) {
            Some(MethodFilter::Any) => true,
            Some(MethodFilter::List(list)) => list.iter().any(|m| match self.case {
                CaseMode::Sensitive => **m == *method,
                CaseMode::Insensitive => m.eq_ignore_ascii_case(method),
            }),
            None => false,
        }
    }

    /// Call `visit` with every trie list (of spec indices) whose pattern matches `path`, until it returns
    /// `true`.
    fn walk_trie(&self, path: &str, visit: &mut impl FnMut(&[usize]) -> bool) {
        let Some(body) = path.strip_prefix('/') else {
            return;
        };
        // Match with or without one trailing slash.
        let body = body.strip_suffix('/').unwrap_or(body);
        let remaining = if body.is_empty() { None } else { Some(body) };
        self.trie.walk(remaining, self.case, visit);
    }
}

impl Node {
    fn insert(&mut self, segs: &[Seg], index: usize) {
        let mut node = self;
        for seg in segs {
            node = match seg {
                Seg::Literal(key) => {
                    let pos = match node
                        .literals
                        .binary_search_by(|(k, _)| k.as_bytes().cmp(key.as_bytes()))
                    {
                        Ok(pos) => pos,
                        Err(pos) => {
                            node.literals
                                .insert(pos, (key.as_str().into(), Node::default()));
                            pos
                        }
                    };
                    &mut node.literals[pos].1
                }
                Seg::One => node.one.get_or_insert_with(Box::default),
                Seg::Rest => {
                    // `parse_path_pattern` only produces `Rest` as the last segment.
                    node.rest.push(index);
                    return;
                }
            };
        }
        node.exact.push(index);
    }

    /// `remaining` is the rest of the path without its leading `/` (`None` when no segments are left).
    /// Returns `true` when `visit` asked to stop.
    fn walk(
        &self,
        remaining: Option<&str>,
        case: CaseMode,
        visit: &mut impl FnMut(&[usize]) -> bool,
    ) -> bool {
        if !self.rest.is_empty() && visit(&self.rest) {
            return true;
        }
        let Some(remaining) = remaining else {
            return !self.exact.is_empty() && visit(&self.exact);
        };
        let (seg, tail) = match remaining.split_once('/') {
            Some((seg, tail)) => (seg, Some(tail)),
            None => (remaining, None),
        };
        if let Some(child) = self.literal(seg, case) {
            if child.walk(tail, case, visit) {
                return true;
            }
        }
        if !seg.is_empty() {
            if let Some(child) = &self.one {
                if child.walk(tail, case, visit) {
                    return true;
                }
            }
        }
        false
    }

    fn literal(&self, seg: &str, case: CaseMode) -> Option<&Node> {
        // A few children (the usual case): one length comparison rules out most keys, and a
        // whole-slice comparison settles the rest, where an ordering compares byte by byte.
        if self.literals.len() <= LINEAR_LITERALS {
            return self
                .literals
                .iter()
                .find(|(key, _)| {
                    key.len() == seg.len()
                        && match case {
                            CaseMode::Sensitive => **key == *seg,
                            // Keys are lower-case already.
                            CaseMode::Insensitive => key.eq_ignore_ascii_case(seg),
                        }
                })
                .map(|(_, child)| child);
        }
        self.literals
            .binary_search_by(|(key, _)| compare_key(key, seg, case))
            .ok()
            .map(|pos| &self.literals[pos].1)
    }
}

/// Up to this many literal-only patterns are compared in turn rather than walked (see
/// `PatternSet::literal_paths`).
const LITERAL_PATHS: usize = 8;

/// A literal-only pattern's segments joined by `/`; `None` when it has `*` or `:name`.
fn literal_text(segs: &[Seg]) -> Option<String> {
    let mut out = String::new();
    for (i, seg) in segs.iter().enumerate() {
        let Seg::Literal(text) = seg else {
            return None;
        };
        if i > 0 {
            out.push('/');
        }
        out.push_str(text);
    }
    Some(out)
}

/// Up to this many literal children are scanned in turn; more are searched by halves.
const LINEAR_LITERALS: usize = 8;

/// Compare a stored literal key with a path segment. In `Insensitive` sets keys are already lower-case, so
/// folding the segment gives an order consistent with the keys' sort order.
fn compare_key(key: &str, seg: &str, case: CaseMode) -> Ordering {
    match case {
        CaseMode::Sensitive => key.as_bytes().cmp(seg.as_bytes()),
        CaseMode::Insensitive => key.bytes().cmp(seg.bytes().map(|b| b.to_ascii_lowercase())),
    }
}

fn parse_path_pattern(pattern: &str, case: CaseMode) -> Result<Vec<Seg>, PatternError> {
    if pattern.is_empty() {
        return Err(PatternError::Empty);
    }
    let Some(body) = pattern.strip_prefix('/') else {
        return Err(PatternError::NotAbsolute);
    };
    // One trailing slash is ignored; `//` (body "/") is left alone and rejected as an empty segment.
    let body = if body.len() > 1 {
        body.strip_suffix('/').unwrap_or(body)
    } else {
        body
    };
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let count = body.split('/').count();
    if count > MAX_PATTERN_SEGMENTS {
        return Err(PatternError::TooManySegments);
    }
    let mut segs = Vec::with_capacity(count);
    for (i, raw) in body.split('/').enumerate() {
        let last = i + 1 == count;
        let seg = if raw.is_empty() {
            return Err(PatternError::EmptySegment);
        } else if raw == "*" {
            if last {
                Seg::Rest
            } else {
                Seg::One
            }
        } else if let Some(name) = raw.strip_prefix(':') {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(PatternError::InvalidParam(raw.to_owned()));
            }
            Seg::One
        } else if raw.contains(['*', ':']) {
            return Err(PatternError::WildcardInSegment(raw.to_owned()));
        } else {
            let mut literal = canonical_segment(raw).map_err(PatternError::InvalidSegment)?;
            if literal == "." || literal == ".." {
                return Err(PatternError::DotSegment);
            }
            if case == CaseMode::Insensitive {
                literal.make_ascii_lowercase();
            }
            Seg::Literal(literal)
        };
        segs.push(seg);
    }
    Ok(segs)
}

fn compile_methods(methods: Option<&[String]>) -> Result<MethodFilter, PatternError> {
    let Some(methods) = methods else {
        return Ok(MethodFilter::Any);
    };
    if methods.is_empty() {
        return Err(PatternError::EmptyMethods);
    }
    let mut list = Vec::with_capacity(methods.len());
    let mut any = false;
    for m in methods {
        if m.is_empty() || !m.bytes().all(is_tchar) {
            return Err(PatternError::InvalidMethod(m.clone()));
        }
        let upper = m.to_ascii_uppercase();
        if upper == "ALL" || upper == "*" {
            any = true;
        }
        list.push(upper.into_boxed_str());
    }
    // `HEAD` is `GET` without the body (RFC 9110 §9.3.2): a server answers it with the same
    // handler, so a list that names `GET` names `HEAD` too. Otherwise a deny rule on `GET` would
    // let `HEAD` of the same resource through, with its headers and status.
    if list.iter().any(|m| &**m == "GET") && !list.iter().any(|m| &**m == "HEAD") {
        list.push("HEAD".into());
    }
    Ok(if any {
        MethodFilter::Any
    } else {
        MethodFilter::List(list.into_boxed_slice())
    })
}

/// RFC 9110 `tchar` (the characters of a method token).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Compile one regex alone, with the limits, to report its own error.
fn check_regex(source: &str, case: CaseMode) -> Result<(), PatternError> {
    if source.len() > MAX_REGEX_LEN {
        return Err(PatternError::RegexTooLong);
    }
    RegexBuilder::new(source)
        .case_insensitive(case == CaseMode::Insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .build()
        .map(drop)
        .map_err(|e| PatternError::Regex(e.to_string()))
}

fn build_group(
    sources: &[&str],
    indices: Vec<usize>,
    case: CaseMode,
) -> Result<Option<RegexGroup>, (usize, PatternError)> {
    let Some(&first) = indices.first() else {
        return Ok(None);
    };
    let set = RegexSetBuilder::new(sources)
        .case_insensitive(case == CaseMode::Insensitive)
        .size_limit(REGEX_SET_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => (first, PatternError::RegexSetTooLarge),
            other => (first, PatternError::Regex(other.to_string())),
        })?;
    Ok(Some(RegexGroup { set, indices }))
}

impl PatternSpec {
    /// Whether this pattern, in a set compiled with `case`, matches every request (method and
    /// canonical path) that `other`, in a set compiled with `other_case`, matches.
    ///
    /// Path patterns are compared segment by segment; a regex covers only the same regex (or is
    /// covered by a path pattern that matches every path, `/*`). When it cannot tell (a regex, a
    /// pattern that does not compile) the answer is `false`: it serves to report patterns that
    /// can never apply, where a wrong `true` would be a false alarm.
    pub fn covers(&self, case: CaseMode, other: &PatternSpec, other_case: CaseMode) -> bool {
        methods_cover(self.methods.as_deref(), other.methods.as_deref())
            && match (&self.kind, &other.kind) {
                (PatternKind::Path(a), PatternKind::Path(b)) => {
                    match (
                        parse_path_pattern(a, case),
                        parse_path_pattern(b, other_case),
                    ) {
                        (Ok(a), Ok(b)) => segments_cover(&a, case, &b, other_case),
                        _ => false,
                    }
                }
                (PatternKind::Path(a), PatternKind::Regex(_)) => {
                    matches!(parse_path_pattern(a, case).as_deref(), Ok([Seg::Rest]))
                }
                // The same source, compared at least as loosely.
                (PatternKind::Regex(a), PatternKind::Regex(b)) => {
                    a == b && (case == CaseMode::Insensitive || other_case == CaseMode::Sensitive)
                }
                (PatternKind::Regex(_), PatternKind::Path(_)) => false,
            }
    }

    /// Whether the pattern, in a set compiled with `case`, may match a path whose first segment
    /// is `first` (or that is `/first`). `true` when it cannot tell (a regex).
    pub fn may_match_below(&self, case: CaseMode, first: &str) -> bool {
        let PatternKind::Path(p) = &self.kind else {
            return true;
        };
        match parse_path_pattern(p, case).as_deref() {
            Ok([]) => false,
            Ok([Seg::Literal(l), ..]) => match case {
                CaseMode::Sensitive => l == first,
                CaseMode::Insensitive => l.eq_ignore_ascii_case(first),
            },
            _ => true,
        }
    }
}

/// Whether method list `a` names every method `b` does (`None`, `ALL` or `*`: every method,
/// including ones no list names; `GET` names `HEAD`, as [`compile_methods`] says).
fn methods_cover(a: Option<&[String]>, b: Option<&[String]>) -> bool {
    let list = |m: Option<&[String]>| match compile_methods(m) {
        Ok(MethodFilter::List(list)) => Some(list),
        _ => None,
    };
    match (list(a), list(b)) {
        (None, _) => compile_methods(a).is_ok(),
        (Some(_), None) => false,
        (Some(a), Some(b)) => b.iter().all(|m| a.contains(m)),
    }
}

/// Whether path pattern `a` (segments in `a_case`) matches every path `b` does.
fn segments_cover(a: &[Seg], a_case: CaseMode, b: &[Seg], b_case: CaseMode) -> bool {
    let split = |segs: &[Seg]| match segs.split_last() {
        Some((Seg::Rest, fixed)) => (fixed.len(), true),
        _ => (segs.len(), false),
    };
    let ((a_len, a_rest), (b_len, b_rest)) = (split(a), split(b));
    let lengths_fit = if a_rest {
        // `b`'s paths have at least `b_len` segments; `a` takes any number past its own.
        b_len >= a_len
    } else {
        !b_rest && b_len == a_len
    };
    lengths_fit
        && a.iter().zip(b).take(a_len).all(|(x, y)| match (x, y) {
            (Seg::One, Seg::Literal(_) | Seg::One) => true,
            (Seg::Literal(x), Seg::Literal(y)) => match (a_case, b_case) {
                (CaseMode::Sensitive, CaseMode::Sensitive) => x == y,
                (CaseMode::Insensitive, _) => x.eq_ignore_ascii_case(y),
                // `b` matches every spelling of its literal; `a` only the one.
                (CaseMode::Sensitive, CaseMode::Insensitive) => {
                    x == y && !y.bytes().any(|c| c.is_ascii_alphabetic())
                }
            },
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(specs: &[PatternSpec], case: CaseMode) -> PatternSet {
        match PatternSet::compile(specs, case) {
            Ok(set) => set,
            Err(errors) => panic!("compile failed: {errors:?}"),
        }
    }

    fn errors(specs: &[PatternSpec], case: CaseMode) -> Vec<(usize, PatternError)> {
        match PatternSet::compile(specs, case) {
            Ok(_) => panic!("compiled unexpectedly: {specs:?}"),
            Err(errors) => errors,
        }
    }

    fn p(s: &str) -> PatternSpec {
        PatternSpec::path(s)
    }

    fn re(s: &str) -> PatternSpec {
        PatternSpec::regex(s)
    }

    /// One path pattern against one path, any method. Asserts both case modes agree (all inputs lower-case).
    #[test]
    fn literal_sets_are_compared_whole_as_the_trie_would_walk_them() {
        let patterns = [
            "/",
            "/health",
            "/API/Items",
            "/a/b/c",
            "/~user",
            "/%7Eother",
            "/caf%c3%a9",
        ];
        let paths = [
            "/",
            "",
            "//",
            "/health",
            "/health/",
            "/health//",
            "/Health",
            "/healthz",
            "/api/items",
            "/API/Items/",
            "/api/items/x",
            "/a/b/c",
            "/a/b",
            "/a/b/c/d",
            "/~user",
            "/~other",
            "/caf%C3%A9",
            "/café",
            "health",
            "/a//b/c",
        ];
        for case in [CaseMode::Sensitive, CaseMode::Insensitive] {
            for pattern in patterns {
                let specs = [p(pattern).with_methods(["GET"])];
                let fast = compile(&specs, case);
                assert!(fast.literal_paths.is_some(), "{pattern}");
                // The same set with one `*` pattern added that matches nothing here: walked.
                let walked = compile(&[specs[0].clone(), p("/zz/*")], case);
                assert!(walked.literal_paths.is_none());
                for path in paths {
                    for method in ["GET", "HEAD", "POST"] {
                        assert_eq!(
                            fast.is_match(method, path),
                            walked.is_match(method, path),
                            "{case:?} {pattern} {method} {path}"
                        );
                    }
                }
            }
        }
    }

    fn pm(pattern: &str, path: &str) -> bool {
        let sensitive = compile(&[p(pattern)], CaseMode::Sensitive).is_match("GET", path);
        let insensitive = compile(&[p(pattern)], CaseMode::Insensitive).is_match("GET", path);
        assert_eq!(sensitive, insensitive, "{pattern} vs {path}");
        sensitive
    }

    fn all(set: &PatternSet, method: &str, path: &str) -> Vec<usize> {
        set.matches(method, path).to_vec()
    }

    // --- reference §5.1 pathMatchesPattern ---

    #[test]
    fn ref_exact() {
        assert!(pm("/api/users", "/api/users"));
        assert!(!pm("/api/users", "/api/posts"));
    }

    #[test]
    fn ref_wildcard() {
        assert!(pm("/api/users/*", "/api/users/123"));
        assert!(!pm("/api/users/*", "/api/posts/123"));
        assert!(pm("/api/*", "/api/x"));
        assert!(pm("/api/*", "/api/a/b/c"));
        assert!(pm("/api/*", "/api/"));
    }

    #[test]
    fn ours_trailing_star_matches_bare_prefix() {
        // Departure: Mastra (both matchers) does not match `/api` with `/api/*`. Here `*` as the last segment
        // is zero or more segments, so the bare prefix is covered too: a protected `/api/*` cannot be
        // sidestepped by requesting `/api` itself.
        assert!(pm("/api/*", "/api"));
        assert!(pm("/api/users/*", "/api/users"));
        assert!(pm("/*", "/"));
        assert!(pm("/*", "/anything/at/all"));
        // ...but not a longer literal segment.
        assert!(!pm("/api/*", "/apix"));
        assert!(!pm("/api/*", "/apix/y"));
    }

    #[test]
    fn ref_params() {
        assert!(pm("/users/:id", "/users/123"));
        assert!(pm("/users/:id", "/users/abc"));
        assert!(!pm("/users/:id", "/posts/123"));
        assert!(pm(
            "/posts/:postId/comments/:commentId",
            "/posts/1/comments/2"
        ));
        assert!(!pm(
            "/posts/:postId/comments/:commentId",
            "/posts/1/comments"
        ));
        assert!(pm("/api/users/:id/profile", "/api/users/7/profile"));
        assert!(!pm("/api/users/:id/profile", "/settings"));
    }

    #[test]
    fn ref_param_segment_count_and_empty() {
        assert!(!pm("/users/:id", "/users/123/extra"));
        assert!(!pm("/users/:id", "/users"));
        assert!(!pm("/users/:id", "/users/"));
        assert!(!pm("/users/:id", "/users//"));
        assert!(!pm("/api/:version/:id", "/api/v1/"));
        assert!(pm("/api/:version/:id", "/api/v1/7/"));
    }

    #[test]
    fn ref_trailing_slash() {
        assert!(pm("/api", "/api"));
        assert!(pm("/api", "/api/"));
        assert!(pm("/health", "/health/"));
        assert!(pm("/health/", "/health"));
        assert!(pm("/users/:id", "/users/123/"));
        assert!(!pm("/health", "/health//"));
    }

    #[test]
    fn root_pattern_matches_only_root() {
        assert!(pm("/", "/"));
        assert!(!pm("/", "/x"));
        assert!(!pm("/", "/x/"));
        assert!(!pm("/x", "/"));
    }

    #[test]
    fn star_mid_pattern_is_one_segment() {
        assert!(pm("/api/*/admin", "/api/v1/admin"));
        assert!(pm("/api/*/admin", "/api/v1/admin/"));
        assert!(!pm("/api/*/admin", "/api/admin"));
        assert!(!pm("/api/*/admin", "/api/v1/v2/admin"));
        assert!(!pm("/api/*/admin", "/api//admin"));
        assert!(pm("/api/*/items/*", "/api/v1/items"));
        assert!(pm("/api/*/items/*", "/api/v1/items/1/2"));
        assert!(pm("/*/x", "/a/x"));
    }

    #[test]
    fn ours_literals_are_literal() {
        // Mastra's modern matcher put literals into a regex unescaped (`.` matched any character).
        assert!(!pm("/file.json", "/fileXjson"));
        assert!(pm("/file.json", "/file.json"));
        assert!(pm("/a+b", "/a+b"));
        assert!(!pm("/a+b", "/aab"));
    }

    #[test]
    fn query_is_not_part_of_path() {
        // The caller passes only the canonical path; a public pattern in the query never matches.
        let public = compile(&[p("/health")], CaseMode::Sensitive);
        assert!(!public.is_match("GET", "/api/admin"));
        let canonical = super::super::canonical::canonicalize("/api/admin?x=/health");
        assert!(canonical.is_err());
    }

    #[test]
    fn literal_normalization() {
        assert!(pm("/%7Euser", "/~user"));
        assert!(pm("/~user", "/~user"));
        assert!(pm("/caf%c3%a9", "/caf%C3%A9"));
        assert!(pm("/café", "/caf%C3%A9"));
        assert!(pm("/a%3ab", "/a%3Ab"));
    }

    // --- reference §5.1 matchesOrIncludes (methods) ---

    #[test]
    fn ref_methods() {
        for case in [CaseMode::Sensitive, CaseMode::Insensitive] {
            let get = compile(&[p("/x").with_methods(["GET"])], case);
            assert!(get.is_match("GET", "/x"));
            assert!(!get.is_match("POST", "/x"));
            // Ours: HEAD follows GET, in both case modes.
            assert!(get.is_match("HEAD", "/x"));
            let head = compile(&[p("/x").with_methods(["HEAD"])], case);
            assert!(!head.is_match("GET", "/x"));
            let many = compile(&[p("/x").with_methods(["GET", "POST"])], case);
            assert!(many.is_match("GET", "/x"));
            assert!(many.is_match("POST", "/x"));
            assert!(!many.is_match("DELETE", "/x"));
        }
    }

    #[test]
    fn ours_all_and_star_mean_any_method() {
        // Departure: in Mastra patterns, 'ALL' only matched a request whose method was literally "ALL".
        for m in ["ALL", "all", "*"] {
            let set = compile(&[p("/x").with_methods([m])], CaseMode::Sensitive);
            for method in ["GET", "POST", "DELETE", "PURGE"] {
                assert!(set.is_match(method, "/x"), "{m} {method}");
            }
        }
        let set = compile(&[p("/x").with_methods(["GET", "ALL"])], CaseMode::Sensitive);
        assert!(set.is_match("PATCH", "/x"));
    }

    #[test]
    fn method_case() {
        let cfg_lower = [p("/x").with_methods(["get"])];
        // Config names are upper-cased.
        assert!(compile(&cfg_lower, CaseMode::Sensitive).is_match("GET", "/x"));
        // A lower-case request method: protected (insensitive) sets still match, public (sensitive) ones do
        // not — fail closed both ways.
        assert!(compile(&cfg_lower, CaseMode::Insensitive).is_match("get", "/x"));
        assert!(!compile(&cfg_lower, CaseMode::Sensitive).is_match("get", "/x"));
    }

    // --- reference §5.1 pathMatchesRule ---

    #[test]
    fn ref_path_matches_rule() {
        let wildcard = compile(&[p("/api/users/*")], CaseMode::Insensitive);
        assert!(wildcard.is_match("GET", "/api/users/123"));
        assert!(!wildcard.is_match("GET", "/api/posts/123"));

        let regex = compile(&[re(r"^\/api\/users\/\d+$")], CaseMode::Insensitive);
        assert!(regex.is_match("GET", "/api/users/123"));
        assert!(!regex.is_match("GET", "/api/posts"));

        // A string array is "any of": a set of several patterns.
        let array = compile(&[p("/api/posts"), p("/api/users")], CaseMode::Insensitive);
        assert!(array.is_match("GET", "/api/users"));
        assert!(!array.is_match("GET", "/api/settings"));
    }

    // --- reference §5.1 canAccessPublicly ---

    fn mastra_public() -> PatternSet {
        compile(
            &[
                p("/api/health"),
                p("/api/login").with_methods(["POST"]),
                re(r"^\/public\/.*"),
                p("/api/agents").with_methods(["GET", "POST"]),
            ],
            CaseMode::Sensitive,
        )
    }

    #[test]
    fn ref_can_access_publicly() {
        let public = mastra_public();
        assert!(public.is_match("GET", "/api/health"));
        assert!(public.is_match("POST", "/api/login"));
        assert!(!public.is_match("GET", "/api/login"));
        assert!(public.is_match("GET", "/public/file.jpg"));
        assert!(!public.is_match("GET", "/api/users"));
        assert!(public.is_match("GET", "/api/agents"));
        assert!(public.is_match("POST", "/api/agents"));
        assert!(!public.is_match("DELETE", "/api/agents"));
        assert_eq!(public.first_match("POST", "/api/login"), Some(1));
        assert_eq!(public.first_match("GET", "/public/file.jpg"), Some(2));
    }

    #[test]
    fn ours_public_is_case_sensitive() {
        // Departure: Mastra's modern matcher is case-insensitive everywhere. Public sets are case-sensitive
        // here, so `/API/HEALTH` is not opened by `/api/health` (and the protected set, case-insensitive,
        // still covers it).
        let public = mastra_public();
        assert!(!public.is_match("GET", "/API/HEALTH"));
        assert!(!public.is_match("GET", "/Public/file.jpg"));
        let protected = compile(&[p("/api/*")], CaseMode::Insensitive);
        assert!(protected.is_match("GET", "/API/HEALTH"));
    }

    // --- reference §5.1 checkRules (path + method part) ---

    #[test]
    fn ref_check_rules_path_part() {
        let rules = compile(
            &[
                p("/api/admin/*").with_methods(["GET"]),
                p("/api/users/*").with_methods(["GET", "POST"]),
                re("/api/public/.*"),
            ],
            CaseMode::Insensitive,
        );
        assert_eq!(all(&rules, "GET", "/api/admin/dashboard"), vec![0]);
        assert_eq!(all(&rules, "GET", "/api/users/123"), vec![1]);
        assert_eq!(all(&rules, "DELETE", "/api/users/123"), Vec::<usize>::new());
        assert_eq!(all(&rules, "GET", "/api/public/file.jpg"), vec![2]);
        assert_eq!(
            all(&rules, "GET", "/api/other/resource"),
            Vec::<usize>::new()
        );
    }

    // --- reference §5.1 isCustomRoutePublic / isProtectedCustomRoute (path part) ---

    #[test]
    fn ref_custom_route_params() {
        assert!(pm("/other/route/:id", "/other/route/test"));
        assert!(pm("/a/:x/b/:y", "/a/1/b/2"));
        assert!(pm("/custom/:id/details", "/custom/42/details"));
        assert!(!pm("/custom/:id/details", "/custom/42"));
        assert!(!pm("/users/:id", "/users/"));
        let webhooks = compile(
            &[p("/webhooks/:id").with_methods(["ALL"])],
            CaseMode::Sensitive,
        );
        assert!(webhooks.is_match("GET", "/webhooks/abc"));
        assert!(webhooks.is_match("POST", "/webhooks/abc"));
        let post = compile(
            &[p("/webhooks/:id").with_methods(["POST"])],
            CaseMode::Sensitive,
        );
        assert!(!post.is_match("GET", "/webhooks/abc"));
    }

    // --- reference §5.1 isProtectedPath (pattern part) ---

    #[test]
    fn ref_protected_and_public_defaults() {
        let protected = compile(&[p("/api/*")], CaseMode::Insensitive);
        let public = compile(&[p("/api"), p("/api/auth/*")], CaseMode::Sensitive);
        let is_protected =
            |m: &str, path: &str| protected.is_match(m, path) && !public.is_match(m, path);
        for path in [
            "/",
            "/agents",
            "/assets/index-abc123.js",
            "/login",
            "/oauth/callback",
        ] {
            assert!(!is_protected("GET", path), "{path}");
        }
        assert!(is_protected("GET", "/api/agents"));
        assert!(is_protected("GET", "/api/agents/123"));
        assert!(is_protected("POST", "/api/memory/threads"));
        assert!(!is_protected("GET", "/api"));
        assert!(!is_protected("GET", "/api/auth/login"));
        // Case: protected folds case, public does not.
        assert!(is_protected("GET", "/API/AUTH/login"));
    }

    // --- case modes ---

    #[test]
    fn case_modes() {
        let specs = [p("/Api/Admin/*"), p("/x/:id/Y"), re("^/rx/Abc$")];
        let ins = compile(&specs, CaseMode::Insensitive);
        let sen = compile(&specs, CaseMode::Sensitive);
        for path in [
            "/api/admin/x",
            "/API/ADMIN",
            "/x/1/y",
            "/X/1/Y",
            "/rx/abc",
            "/RX/ABC",
        ] {
            assert!(ins.is_match("GET", path), "{path}");
        }
        assert!(sen.is_match("GET", "/Api/Admin/x"));
        assert!(sen.is_match("GET", "/x/AnY/Y"));
        assert!(sen.is_match("GET", "/rx/Abc"));
        for path in ["/api/admin/x", "/API/ADMIN", "/x/1/y", "/rx/abc"] {
            assert!(!sen.is_match("GET", path), "{path}");
        }
        assert_eq!(ins.case_mode(), CaseMode::Insensitive);
    }

    #[test]
    fn insensitive_escapes_compare_consistently() {
        let ins = compile(&[p("/a%3ab/%C3%A9")], CaseMode::Insensitive);
        assert!(ins.is_match("GET", "/A%3AB/%C3%A9"));
        assert!(ins.is_match("GET", "/a%3Ab/%c3%a9"));
    }

    // --- regexes ---

    #[test]
    fn regex_unanchored_unless_anchored() {
        let set = compile(&[re("/admin")], CaseMode::Sensitive);
        assert!(set.is_match("GET", "/api/admin/x"));
        let anchored = compile(&[re("^/admin$")], CaseMode::Sensitive);
        assert!(!anchored.is_match("GET", "/api/admin"));
        assert!(anchored.is_match("GET", "/admin"));
    }

    #[test]
    fn regex_with_methods() {
        let set = compile(
            &[
                re("^/r/").with_methods(["POST"]),
                re("^/r/x").with_methods(["GET", "PUT"]),
                re("^/any"),
            ],
            CaseMode::Insensitive,
        );
        assert!(set.is_match("POST", "/r/x"));
        assert!(set.is_match("GET", "/r/x"));
        assert!(!set.is_match("GET", "/r/y"));
        assert!(!set.is_match("DELETE", "/r/x"));
        assert!(set.is_match("DELETE", "/any/x"));
        assert_eq!(set.first_match("PUT", "/r/x"), Some(1));
        assert_eq!(set.first_match("POST", "/r/x"), Some(0));
        assert_eq!(all(&set, "POST", "/r/x"), vec![0]);
        assert_eq!(all(&set, "GET", "/r/x"), vec![1]);
    }

    #[test]
    fn regex_errors_and_limits() {
        let errs = errors(&[re("(")], CaseMode::Sensitive);
        assert!(matches!(errs.as_slice(), [(0, PatternError::Regex(_))]));
        let long = "a".repeat(MAX_REGEX_LEN + 1);
        let errs = errors(&[re(&long)], CaseMode::Sensitive);
        assert_eq!(errs, vec![(0, PatternError::RegexTooLong)]);
        // Exceeds the compiled size limit.
        let errs = errors(&[re(r"\w{1000}\w{1000}\w{1000}")], CaseMode::Sensitive);
        assert!(
            matches!(errs.as_slice(), [(0, PatternError::Regex(_))]),
            "{errs:?}"
        );
    }

    // --- mixed sets, ordering ---

    #[test]
    fn first_match_and_matches_are_ordered() {
        let set = compile(
            &[
                re("^/api/users/\\d+$"),
                p("/api/users/:id").with_methods(["DELETE"]),
                p("/api/*"),
                p("/api/users/*"),
                p("/api/users/7"),
                re("users"),
                p("/other"),
            ],
            CaseMode::Insensitive,
        );
        assert_eq!(all(&set, "GET", "/api/users/7"), vec![0, 2, 3, 4, 5]);
        assert_eq!(all(&set, "DELETE", "/api/users/7"), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(set.first_match("GET", "/api/users/7"), Some(0));
        assert_eq!(set.first_match("GET", "/api/users/x"), Some(2));
        assert_eq!(set.first_match("GET", "/nothing"), None);
        assert_eq!(all(&set, "GET", "/nothing"), Vec::<usize>::new());
        assert!(set.is_match("GET", "/other/"));
        assert_eq!(set.len(), 7);
        assert!(!set.is_empty());
    }

    #[test]
    fn duplicate_patterns_keep_both_indices() {
        let set = compile(
            &[p("/a").with_methods(["POST"]), p("/a")],
            CaseMode::Sensitive,
        );
        assert_eq!(all(&set, "GET", "/a"), vec![1]);
        assert_eq!(all(&set, "POST", "/a"), vec![0, 1]);
        assert_eq!(set.first_match("GET", "/a"), Some(1));
    }

    #[test]
    fn empty_set() {
        let set = compile(&[], CaseMode::Sensitive);
        assert!(set.is_empty());
        assert_eq!(set.len(), 0);
        assert!(!set.is_match("GET", "/"));
        assert_eq!(set.first_match("GET", "/"), None);
    }

    #[test]
    fn non_canonical_input_does_not_panic() {
        let set = compile(&[p("/*"), p("/a/:b")], CaseMode::Insensitive);
        assert!(!compile(&[p("/a/:b")], CaseMode::Sensitive).is_match("GET", ""));
        assert!(!compile(&[p("/a/:b")], CaseMode::Sensitive).is_match("GET", "a/b"));
        assert!(set.is_match("GET", "//"));
        assert!(set.is_match("GET", "/a//"));
    }

    // --- compile errors ---

    #[test]
    fn path_compile_errors() {
        let cases: &[(&str, PatternError)] = &[
            ("", PatternError::Empty),
            ("api/x", PatternError::NotAbsolute),
            ("*", PatternError::NotAbsolute),
            ("/api*", PatternError::WildcardInSegment("api*".into())),
            ("/a:b", PatternError::WildcardInSegment("a:b".into())),
            ("/api/*x", PatternError::WildcardInSegment("*x".into())),
            ("/:", PatternError::InvalidParam(":".into())),
            ("/users/:id?", PatternError::InvalidParam(":id?".into())),
            (
                "/f/:name.json",
                PatternError::InvalidParam(":name.json".into()),
            ),
            ("/a//b", PatternError::EmptySegment),
            ("//", PatternError::EmptySegment),
            ("/a/../b", PatternError::DotSegment),
            ("/a/%2E", PatternError::DotSegment),
            (
                "/a%2Fb",
                PatternError::InvalidSegment(PathError::EncodedSlash),
            ),
            ("/a\\b", PatternError::InvalidSegment(PathError::Backslash)),
            (
                "/a%zz",
                PatternError::InvalidSegment(PathError::MalformedEscape),
            ),
        ];
        for (pattern, expected) in cases {
            let errs = errors(&[p(pattern)], CaseMode::Sensitive);
            assert_eq!(errs, vec![(0, expected.clone())], "{pattern:?}");
        }
        let too_many = "/a".repeat(MAX_PATTERN_SEGMENTS + 1);
        assert_eq!(
            errors(&[p(&too_many)], CaseMode::Sensitive),
            vec![(0, PatternError::TooManySegments)]
        );
        assert!(PatternSet::compile(
            &[p(&"/a".repeat(MAX_PATTERN_SEGMENTS))],
            CaseMode::Sensitive
        )
        .is_ok());
    }

    #[test]
    fn all_errors_at_once() {
        let specs = [
            p("/ok"),
            p("/api*"),
            re("ok"),
            re("(unclosed"),
            p("relative"),
            p("/x").with_methods(Vec::<String>::new()),
            p("/y").with_methods(["GET", "BAD METHOD"]),
            p("/z*").with_methods(["G\u{e9}T"]),
            p("/fine/*"),
        ];
        let errs = errors(&specs, CaseMode::Insensitive);
        let indices: Vec<usize> = errs.iter().map(|(i, _)| *i).collect();
        assert_eq!(indices, vec![1, 3, 4, 5, 6, 7, 7]);
        assert!(matches!(errs[0].1, PatternError::WildcardInSegment(_)));
        assert!(matches!(errs[1].1, PatternError::Regex(_)));
        assert_eq!(errs[2].1, PatternError::NotAbsolute);
        assert_eq!(errs[3].1, PatternError::EmptyMethods);
        assert_eq!(errs[4].1, PatternError::InvalidMethod("BAD METHOD".into()));
        assert!(matches!(errs[5].1, PatternError::InvalidMethod(_)));
        assert!(matches!(errs[6].1, PatternError::WildcardInSegment(_)));
        for (_, e) in &errs {
            assert!(!e.to_string().is_empty());
        }
    }

    // --- scale ---

    #[test]
    fn thousand_patterns() {
        let mut specs = Vec::new();
        for i in 0..1000 {
            specs.push(match i % 4 {
                0 => p(&format!("/svc{i}/items")),
                1 => p(&format!("/svc{i}/items/:id")),
                2 => p(&format!("/svc{i}/*")).with_methods(["POST"]),
                _ => p(&format!("/svc{i}/a/b/c")),
            });
        }
        let set = compile(&specs, CaseMode::Insensitive);
        assert_eq!(set.len(), 1000);
        // Distinct first segments: the root has one literal child per pattern, found by binary search.
        assert_eq!(set.trie.literals.len(), 1000);
        for i in 0..1000 {
            let (method, path, other) = match i % 4 {
                0 => ("GET", format!("/svc{i}/items"), format!("/svc{i}/items/1")),
                1 => ("GET", format!("/svc{i}/items/1"), format!("/svc{i}/items")),
                2 => ("POST", format!("/svc{i}/x/y"), format!("/svc{i}/x/y")),
                _ => ("GET", format!("/SVC{i}/a/b/c/"), format!("/svc{i}/a/b")),
            };
            assert_eq!(set.first_match(method, &path), Some(i), "{path}");
            assert_eq!(set.matches(method, &path).as_slice(), [i], "{path}");
            // The near miss (for i % 4 == 2: the wrong method).
            let other_method = if i % 4 == 2 { "GET" } else { method };
            assert!(!set.is_match(other_method, &other), "{other}");
        }
        assert!(!set.is_match("GET", "/svc1000/items"));
        assert!(!set.is_match("GET", "/svc/items"));
        assert!(!set.is_match("GET", "/"));
    }

    fn covers(a: PatternSpec, ac: CaseMode, b: PatternSpec, bc: CaseMode) -> bool {
        a.covers(ac, &b, bc)
    }

    #[test]
    fn coverage_of_path_patterns() {
        use CaseMode::{Insensitive as I, Sensitive as S};
        let yes = [
            ("/*", "/"),
            ("/*", "/anything/at/all"),
            ("/*", "/x/*"),
            ("/api/*", "/api"),
            ("/api/*", "/api/*"),
            ("/api/*", "/api/users/:id"),
            ("/api/:x/*", "/api/a/b"),
            ("/api/*/x", "/api/:id/x"),
            ("/a/b", "/a/b/"),
            ("/", "/"),
            ("/%7Euser", "/~user"),
        ];
        for (a, b) in yes {
            assert!(covers(p(a), S, p(b), S), "{a} should cover {b}");
            assert!(covers(p(a), I, p(b), S), "{a} (any case) should cover {b}");
        }
        let no = [
            ("/", "/*"),
            ("/api", "/api/*"),
            ("/api/x", "/api/:id"),
            ("/api/:id", "/api"),
            ("/api/:id", "/api/*"),
            ("/api/*/x", "/api/*"),
            ("/a/b", "/a/c"),
            ("/a/*", "/b/*"),
            ("/a/b/*", "/a/*"),
        ];
        for (a, b) in no {
            assert!(!covers(p(a), S, p(b), S), "{a} should not cover {b}");
            assert!(!covers(p(a), I, p(b), I), "{a} should not cover {b}");
        }
        // Case: an exact literal does not cover one matched in any case, unless it has no letter.
        assert!(covers(p("/API/*"), I, p("/api/x"), S));
        assert!(covers(p("/api/*"), I, p("/Api/x"), I));
        assert!(!covers(p("/api/*"), S, p("/api/x"), I));
        assert!(!covers(p("/api/*"), S, p("/API/x"), S));
        assert!(!covers(p("/v1/*"), S, p("/v1/:x"), I));
        assert!(covers(p("/1/*"), S, p("/1/:x"), I));
        // A pattern that does not compile covers nothing and is covered by nothing.
        assert!(!covers(p("/*"), S, p("/a*"), S));
        assert!(!covers(p("/a*"), S, p("/a"), S));
    }

    #[test]
    fn coverage_of_methods_and_regexes() {
        use CaseMode::{Insensitive as I, Sensitive as S};
        let m = |path: &str, methods: &[&str]| p(path).with_methods(methods.iter().copied());
        assert!(covers(p("/a"), S, m("/a", &["POST"]), S));
        assert!(covers(m("/a", &["ALL"]), S, p("/a"), S));
        assert!(covers(m("/a", &["GET", "POST"]), S, m("/a", &["post"]), S));
        assert!(covers(m("/a", &["GET"]), S, m("/a", &["HEAD"]), S));
        assert!(!covers(m("/a", &["GET"]), S, p("/a"), S));
        assert!(!covers(m("/a", &["GET"]), S, m("/a", &["GET", "PUT"]), S));
        assert!(!covers(m("/a", &["HEAD"]), S, m("/a", &["GET"]), S));
        assert!(!covers(m("/a", &[]), S, m("/a", &[]), S));
        // A regex: the same source, or `/*`.
        assert!(covers(re("^/docs/"), I, re("^/docs/"), S));
        assert!(!covers(re("^/docs/"), S, re("^/docs/"), I));
        assert!(!covers(re("^/docs/"), S, re("^/doc"), S));
        assert!(covers(p("/*"), S, re("^/docs/"), S));
        assert!(!covers(p("/docs/*"), S, re("^/docs/"), S));
        assert!(!covers(re("^/"), S, p("/docs"), S));
    }

    #[test]
    fn may_match_below_a_first_segment() {
        use CaseMode::{Insensitive as I, Sensitive as S};
        assert!(p("/health").may_match_below(S, "health"));
        assert!(p("/health/*").may_match_below(S, "health"));
        assert!(!p("/Health").may_match_below(S, "health"));
        assert!(p("/Health").may_match_below(I, "health"));
        assert!(p("/:x").may_match_below(S, "health"));
        assert!(p("/*").may_match_below(S, "health"));
        assert!(!p("/").may_match_below(S, "health"));
        assert!(!p("/api/*").may_match_below(S, "health"));
        assert!(re("^/api").may_match_below(S, "health"));
    }

    #[test]
    fn pattern_set_is_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<PatternSet>();
    }
}
