//! Config errors: every one names its key path; all are reported at once.

use std::fmt;

/// One problem in a config file, at a key path such as `auth.rules[2].condition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Key path (`""` for the whole document).
    pub path: String,
    /// One lower-case line; never contains a secret or raw YAML.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a config could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read config: {reason}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The file is not valid YAML.
    #[error("{file}: not valid YAML: {reason}")]
    Syntax {
        /// The file.
        file: String,
        /// Parser message (positions only, no content).
        reason: String,
    },
    /// The YAML is well-formed but wrong in one or more places.
    #[error("{file}: {} error(s): {}", issues.len(), join(issues))]
    Invalid {
        /// The file.
        file: String,
        /// Every problem found.
        issues: Vec<ConfigIssue>,
    },
}

impl ConfigError {
    /// The file the error is about.
    pub fn file(&self) -> &str {
        match self {
            ConfigError::Read { file, .. }
            | ConfigError::Syntax { file, .. }
            | ConfigError::Invalid { file, .. } => file,
        }
    }

    /// The individual problems (one for read and syntax errors), without the file's name.
    pub fn issues(&self) -> Vec<ConfigIssue> {
        let whole = |message: String| {
            vec![ConfigIssue {
                path: String::new(),
                message,
            }]
        };
        match self {
            ConfigError::Invalid { issues, .. } => issues.clone(),
            ConfigError::Read { reason, .. } => whole(format!("cannot read config: {reason}")),
            ConfigError::Syntax { reason, .. } => whole(format!("not valid YAML: {reason}")),
        }
    }

    /// One line per problem, each naming the file once: `config.yaml: auth.rules[0]: ...`.
    pub fn lines(&self) -> Vec<String> {
        self.issues()
            .iter()
            .map(|i| format!("{}: {i}", self.file()))
            .collect()
    }
}

fn join(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Collects issues while a config is checked.
#[derive(Default, Debug)]
pub struct Issues(pub Vec<ConfigIssue>);

impl Issues {
    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
        });
    }
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Joins a parent key path and a child key.
pub fn join_path(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else if child.starts_with('[') {
        format!("{parent}{child}")
    } else {
        format!("{parent}.{child}")
    }
}
