//! Asking for a reload: every trigger (the file watch, SIGHUP, the admin API, a test) sends a
//! request to the one reload task through a [`Reloader`], so that reloads never overlap.

use tokio::sync::{mpsc, oneshot};

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new snapshot of this generation was published; the config's warnings.
    Applied(u64, Vec<String>),
    /// The config and plugin files are the same as the ones served; the config's warnings.
    Unchanged(u64, Vec<String>),
    /// Nothing changed; these are the reasons.
    Failed(Vec<String>),
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
        let stopped = || ReloadOutcome::Failed(vec!["the reload task has stopped".into()]);
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
