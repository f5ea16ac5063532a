//! The state folder (`PORTCULLIS_STATE_DIR`, default `./.portcullis`) and the development secret
//! kept there, so that the default config serves with no outside account.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    sync::Mutex,
};

use base64::Engine as _;

/// The state folder.
pub fn state_dir() -> PathBuf {
    std::env::var_os("PORTCULLIS_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".portcullis"))
}

static DEV_SECRET: Mutex<Option<String>> = Mutex::new(None);

/// The development secret: read from `<state>/dev-secret`, or generated (32 random bytes,
/// base64url) and written there with mode 0600 on first use.
pub fn dev_secret() -> Option<String> {
    let mut cached = DEV_SECRET.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = cached.as_ref() {
        return Some(s.clone());
    }
    let dir = state_dir();
    match load_or_create(&dir) {
        Ok((secret, created)) => {
            let file = dir.join("dev-secret");
            if created {
                tracing::warn!(file = %file.display(), "generated a DEVELOPMENT-ONLY JWT secret; set JWT_AUTH_SECRET or configure a real provider before production");
            } else {
                tracing::warn!(file = %file.display(), "using the DEVELOPMENT-ONLY JWT secret; set JWT_AUTH_SECRET or configure a real provider before production");
            }
            *cached = Some(secret.clone());
            Some(secret)
        }
        Err(e) => {
            tracing::error!(dir = %dir.display(), "cannot keep the development secret: {e}");
            None
        }
    }
}

fn load_or_create(dir: &Path) -> std::io::Result<(String, bool)> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let file = dir.join("dev-secret");
    if let Ok(s) = std::fs::read_to_string(&file) {
        let s = s.trim().to_string();
        if s.len() >= 32 {
            return Ok((s, false));
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| std::io::Error::other("no randomness"))?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let tmp = dir.join(format!("dev-secret.{}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(secret.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &file)?;
    Ok((secret, true))
}
