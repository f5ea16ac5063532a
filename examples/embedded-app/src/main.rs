//! A notes service written with Poem and poem-openapi, protected by Portcullis as a library.
//!
//! Every request goes through the gate the YAML config describes (`portcullis.yaml` next to this
//! crate by default; `--config FILE` or `PORTCULLIS_CONFIG` for another): which paths need a
//! user, which provider plugin checks the token, which rules authorize it. The config and the
//! plugins reload live while the service runs. The handlers receive the user the gate let
//! through: [`BearerAuth`] in the OpenAPI operations (documented with the `bearerAuth` scheme),
//! [`AuthUser`] in the plain Poem handler. `/openapi.json` and `/swagger-ui` describe the notes
//! API and Portcullis's own endpoints in one document.
//!
//! Run it with `cargo run -p embedded-app` (README.md shows the calls).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::{SystemTime, UNIX_EPOCH},
};

use poem::{get, handler, web::Json as PlainJson, Route};
use poem_openapi::{param::Path, payload::Json, ApiResponse, Object, OpenApi, Tags};
use portcullis::{AuthUser, BearerAuth, LogFormat, Portcullis};

/// The server's own allocator: per-thread pages for the small, short-lived allocations of a
/// request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A note.
#[derive(Object, Clone, Debug)]
struct Note {
    /// Its id.
    id: u64,
    /// The subject (`sub` claim) of the user who wrote it.
    owner: String,
    /// The text.
    text: String,
    /// Whether anyone may read it (`GET /api/public/notes`).
    public: bool,
    /// When it was written, in Unix seconds.
    created_at: u64,
}

/// A note to write.
#[derive(Object, Debug)]
struct NewNote {
    /// The text.
    #[oai(validator(min_length = 1, max_length = 10000))]
    text: String,
    /// Whether anyone may read it.
    #[oai(default)]
    public: bool,
}

/// An error body, shaped like Portcullis's own.
#[derive(Object, Debug)]
struct Problem {
    /// What went wrong.
    error: String,
}

fn error(text: &str) -> Json<Problem> {
    Json(Problem { error: text.into() })
}

#[derive(ApiResponse)]
enum Created {
    /// The note, as stored.
    #[oai(status = 201)]
    Created(Json<Note>),
    /// The user has no subject to own a note.
    #[oai(status = 403)]
    Forbidden(Json<Problem>),
}

#[derive(ApiResponse)]
enum Listed {
    /// The notes, oldest first.
    #[oai(status = 200)]
    Ok(Json<Vec<Note>>),
    /// The user has no subject to own notes.
    #[oai(status = 403)]
    Forbidden(Json<Problem>),
}

#[derive(ApiResponse)]
enum Deleted {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
    /// No such note (or not one of the caller's).
    #[oai(status = 404)]
    NotFound(Json<Problem>),
}

#[derive(Tags)]
enum NoteTags {
    /// The caller's own notes.
    Notes,
    /// Notes their authors made public: no token needed.
    Public,
    /// Every user's notes (the config's rules allow admins only).
    Admin,
}

/// The notes, by id, in memory.
#[derive(Default)]
struct Store {
    next: u64,
    notes: BTreeMap<u64, Note>,
}

/// The notes API.
struct NotesApi {
    store: Arc<Mutex<Store>>,
}

impl NotesApi {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while the lock was held leaves the map whole (every change is one insert or
        // remove): keep serving it.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn no_subject() -> Json<Problem> {
    error("the token names no subject (`sub` claim)")
}

#[OpenApi]
impl NotesApi {
    /// Writes a note owned by the caller.
    #[oai(path = "/api/notes", method = "post", tag = "NoteTags::Notes")]
    async fn create(&self, user: BearerAuth, note: Json<NewNote>) -> Created {
        let Some(owner) = user.subject() else {
            return Created::Forbidden(no_subject());
        };
        let mut store = self.store();
        store.next += 1;
        let note = Note {
            id: store.next,
            owner: owner.to_string(),
            text: note.0.text,
            public: note.0.public,
            created_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        store.notes.insert(note.id, note.clone());
        Created::Created(Json(note))
    }

    /// The caller's notes.
    #[oai(path = "/api/notes", method = "get", tag = "NoteTags::Notes")]
    async fn list(&self, user: BearerAuth) -> Listed {
        let Some(owner) = user.subject() else {
            return Listed::Forbidden(no_subject());
        };
        let notes = self
            .store()
            .notes
            .values()
            .filter(|n| n.owner == owner)
            .cloned()
            .collect();
        Listed::Ok(Json(notes))
    }

    /// Deletes one of the caller's notes.
    #[oai(path = "/api/notes/:id", method = "delete", tag = "NoteTags::Notes")]
    async fn delete(&self, user: BearerAuth, id: Path<u64>) -> Deleted {
        let mut store = self.store();
        match store.notes.get(&id.0) {
            Some(n) if Some(n.owner.as_str()) == user.subject() => {
                store.notes.remove(&id.0);
                Deleted::Deleted
            }
            _ => Deleted::NotFound(error("Not Found")),
        }
    }

    /// The notes their authors made public (no token needed: `auth.public` lists the path).
    #[oai(path = "/api/public/notes", method = "get", tag = "NoteTags::Public")]
    async fn public(&self) -> Json<Vec<Note>> {
        Json(
            self.store()
                .notes
                .values()
                .filter(|n| n.public)
                .cloned()
                .collect(),
        )
    }

    /// Every user's notes (the config lets only admins through).
    #[oai(path = "/api/admin/notes", method = "get", tag = "NoteTags::Admin")]
    async fn all(&self, _admin: BearerAuth) -> Json<Vec<Note>> {
        Json(self.store().notes.values().cloned().collect())
    }

    /// Deletes any user's note (the config lets only admins through).
    #[oai(
        path = "/api/admin/notes/:id",
        method = "delete",
        tag = "NoteTags::Admin"
    )]
    async fn delete_any(&self, _admin: BearerAuth, id: Path<u64>) -> Deleted {
        match self.store().notes.remove(&id.0) {
            Some(_) => Deleted::Deleted,
            None => Deleted::NotFound(error("Not Found")),
        }
    }
}

/// `GET /api/whoami`, a plain Poem handler: the user the gate let through, as the service sees it.
#[handler]
fn whoami(user: AuthUser) -> PlainJson<serde_json::Value> {
    PlainJson(serde_json::json!({
        "provider": user.provider(),
        "subject": user.subject(),
        "claims": user.claims(),
    }))
}

/// The config to read: `--config FILE`, else `PORTCULLIS_CONFIG`, else the one next to this
/// crate.
fn config_path() -> Result<PathBuf, String> {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config = Some(PathBuf::from(args.next().ok_or("--config needs a file")?)),
            "-h" | "--help" => {
                return Err(
                    "usage: embedded-app [--config FILE]   (default: PORTCULLIS_CONFIG, \
                            else examples/embedded-app/portcullis.yaml)"
                        .into(),
                )
            }
            other => return Err(format!("unexpected argument `{other}`; try --help")),
        }
    }
    Ok(config
        .or_else(|| std::env::var_os("PORTCULLIS_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/portcullis.yaml"))))
}

async fn run(config: PathBuf) -> Result<(), portcullis::Error> {
    let portcullis = Portcullis::builder(&config)
        .document("Notes", env!("CARGO_PKG_VERSION"))
        .description("Notes, behind Portcullis: the service's operations and Portcullis's own.")
        .open()
        .await?;
    let api = NotesApi {
        store: Arc::default(),
    };
    let plain = Route::new().at("/api/whoami", get(whoami));
    portcullis.serve_with_routes(api, plain).await
}

fn main() {
    let config = match config_path() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // Logging before the runtime starts (the span exporter, when the config has one, makes its
    // own blocking client).
    let telemetry = portcullis::init_telemetry(&config, LogFormat::Human);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(run(config)) {
        Ok(()) => 0,
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            1
        }
    };
    telemetry.shutdown();
    std::process::exit(code);
}
