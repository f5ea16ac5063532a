//! Asking for a reload: every trigger (the file watch, SIGHUP, the admin API, a test) sends a
//! request to the one reload task through a [`Reloader`], so that reloads never overlap.

use tokio::sync::{mpsc, oneshot};

use super::{ReloadError, ReloadErrorKind};

/// What a reload did, in one word (the status API, the reload answer, the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, poem_openapi::Enum)]
#[serde(rename_all = "snake_case")]
#[oai(rename_all = "snake_case")]
pub enum ReloadResult {
    /// A new snapshot was published.
    Applied,
    /// The files are the ones served: nothing to do.
    Unchanged,
    /// Refused: the last good snapshot keeps serving.
    Failed,
}

impl ReloadResult {
    /// The word, for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            ReloadResult::Applied => "applied",
            ReloadResult::Unchanged => "unchanged",
            ReloadResult::Failed => "failed",
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new snapshot of this generation was published; the config's warnings.
    Applied(u64, Vec<String>),
    /// The config and plugin files are the same as the ones served; the config's warnings.
    Unchanged(u64, Vec<String>),
    /// Nothing changed; these are the reasons.
    Failed(Vec<ReloadError>),
}

impl ReloadOutcome {
    /// The outcome in one word.
    pub fn result(&self) -> ReloadResult {
        match self {
            ReloadOutcome::Applied(..) => ReloadResult::Applied,
            ReloadOutcome::Unchanged(..) => ReloadResult::Unchanged,
            ReloadOutcome::Failed(..) => ReloadResult::Failed,
        }
    }
}

/// A request for a reload, sent to the one reload task.
pub struct ReloadRequest {
    /// What asked (`watch`, `sighup`, `api`, ...), for the status and the logs.
    pub trigger: &'static str,
    /// Where the outcome goes, when the asker waits for it.
    pub reply: Option<oneshot::Sender<ReloadOutcome>>,
}

/// The sending side of the reload task's queue; cheap to clone.
#[derive(Clone, Debug)]
pub struct Reloader {
    tx: mpsc::Sender<ReloadRequest>,
}

impl Reloader {
    /// A reloader and the queue the reload task reads.
    pub fn channel() -> (Reloader, mpsc::Receiver<ReloadRequest>) {
        let (tx, rx) = mpsc::channel(64);
        (Reloader { tx }, rx)
    }

    /// Asks for a reload and waits for its outcome.
    pub async fn request(&self, trigger: &'static str) -> ReloadOutcome {
        let stopped = || {
            ReloadOutcome::Failed(vec![ReloadError::new(
                ReloadErrorKind::Stopped,
                "the reload task has stopped",
            )])
        };
        let (reply, answer) = oneshot::channel();
        let request = ReloadRequest {
            trigger,
            reply: Some(reply),
        };
        if self.tx.send(request).await.is_err() {
            return stopped();
        }
        answer.await.unwrap_or_else(|_| stopped())
    }

    /// Asks for a reload without waiting (dropped when the queue is full: a reload is queued).
    pub fn notify(&self, trigger: &'static str) {
        let _ = self.tx.try_send(ReloadRequest {
            trigger,
            reply: None,
        });
    }
}
