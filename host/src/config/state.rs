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
/// base64url) and written there with mode 0600, in a folder of mode 0700, on first use.
///
/// An existing file is used only when it and its folder belong to this process's user and
/// neither is group- or world-writable: anyone else who can write it chooses the key every
/// default-config token is checked with. Otherwise the error says which file and what is wrong
/// (one line, never the secret), and a config that needs the secret is refused with it.
pub fn dev_secret() -> Result<String, String> {
    let mut cached = DEV_SECRET.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(s) = cached.as_ref() {
        return Ok(s.clone());
    }
    let dir = state_dir();
    let (secret, created) = load_or_create(&dir, rustix::process::geteuid().as_raw())?;
    let file = dir.join(FILE_NAME);
    if created {
        tracing::warn!(file = %file.display(), "generated a DEVELOPMENT-ONLY JWT secret; set JWT_AUTH_SECRET or configure a real provider before production");
    } else {
        tracing::warn!(file = %file.display(), "using the DEVELOPMENT-ONLY JWT secret; set JWT_AUTH_SECRET or configure a real provider before production");
    }
    *cached = Some(secret.clone());
    Ok(secret)
}

const FILE_NAME: &str = "dev-secret";

/// What is wrong with `meta` for holding (or holding the folder of) a secret of user `uid`.
fn untrusted(meta: &std::fs::Metadata, uid: u32) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    if meta.uid() != uid {
        return Some(format!(
            "owned by uid {}, not by this server's user (uid {uid})",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    let writable = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "group- and world-writable",
        (true, false) => "group-writable",
        (false, true) => "world-writable",
        (false, false) => return None,
    };
    Some(format!("{writable} (mode {mode:04o})"))
}

/// Reads the secret in `dir`, or makes one; `uid` is the user that must own both. The flag says
/// whether the secret was made now.
fn load_or_create(dir: &Path, uid: u32) -> Result<(String, bool), String> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    let file = dir.join(FILE_NAME);
    let refuse = |what: &Path, why: String| {
        format!(
            "refusing the development secret: {} is {why}; fix it, or set JWT_AUTH_SECRET",
            what.display()
        )
    };
    let io = |what: &Path, e: std::io::Error| {
        format!(
            "cannot keep the development secret in {}: {e}",
            what.display()
        )
    };
    match std::fs::metadata(dir) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(refuse(dir, "not a folder".into()));
            }
            if let Some(why) = untrusted(&meta, uid) {
                return Err(refuse(dir, why));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io(dir, e))?;
        }
        Err(e) => return Err(io(dir, e)),
    }
    // The file is judged by the handle it is read through, so what was checked is what is read.
    match std::fs::File::open(&file) {
        Ok(mut f) => {
            let meta = f.metadata().map_err(|e| io(&file, e))?;
            if !meta.is_file() {
                return Err(refuse(&file, "not a regular file".into()));
            }
            if let Some(why) = untrusted(&meta, uid) {
                return Err(refuse(&file, why));
            }
            let mut s = String::new();
            use std::io::Read as _;
            // A secret is 43 characters; anything much longer is not one of ours.
            (&mut f)
                .take(4096)
                .read_to_string(&mut s)
                .map_err(|e| io(&file, e))?;
            let s = s.trim();
            if s.len() >= 32 {
                return Ok((s.to_string(), false));
            }
            // Too short to be a secret (an interrupted write of an old version): made again.
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&file, e)),
    }
    // A new secret: only this user may even list the folder it is kept in.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io(dir, e))?;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "no randomness for the development secret")?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let tmp = dir.join(format!("{FILE_NAME}.{}.tmp", std::process::id()));
    // A left-over temporary file keeps its old mode when opened again: start from none.
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io(&tmp, e))?;
    // The mode given at creation is narrowed by the umask, never widened; this makes it exact.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| f.write_all(secret.as_bytes()))
        .and_then(|()| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &file).map_err(|e| io(&file, e))?;
    Ok((secret, true))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    fn me() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o7777
    }

    fn chmod(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn a_new_secret_is_0600_in_a_0700_folder_and_is_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let (secret, created) = load_or_create(&dir, me()).unwrap();
        assert!(created);
        assert_eq!(secret.len(), 43);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(FILE_NAME)), 0o600);
        let (again, created) = load_or_create(&dir, me()).unwrap();
        assert!(!created);
        assert_eq!(again, secret);
    }

    #[test]
    fn an_existing_open_folder_is_closed_before_a_secret_is_made_in_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o755);
        load_or_create(&dir, me()).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(FILE_NAME)), 0o600);
    }

    #[test]
    fn a_group_or_world_writable_secret_is_refused_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let (secret, _) = load_or_create(&dir, me()).unwrap();
        let file = dir.join(FILE_NAME);
        for (m, what) in [
            (0o620, "group-writable (mode 0620)"),
            (0o602, "world-writable (mode 0602)"),
            (0o666, "group- and world-writable (mode 0666)"),
        ] {
            chmod(&file, m);
            let e = load_or_create(&dir, me()).unwrap_err();
            assert!(e.contains(&file.display().to_string()), "{e}");
            assert!(e.contains(what), "{e}");
            assert!(!e.contains(&secret), "{e}");
            assert!(!e.contains('\n'), "{e}");
            // Refused, not replaced: the file is left for its owner to look at.
            assert_eq!(std::fs::read_to_string(&file).unwrap(), secret);
        }
        chmod(&file, 0o644);
        assert_eq!(load_or_create(&dir, me()).unwrap(), (secret, false));
    }

    #[test]
    fn a_writable_folder_is_refused_even_with_a_tight_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        load_or_create(&dir, me()).unwrap();
        chmod(&dir, 0o777);
        let e = load_or_create(&dir, me()).unwrap_err();
        assert!(e.contains(&dir.display().to_string()), "{e}");
        assert!(e.contains("group- and world-writable (mode 0777)"), "{e}");
        // A folder that is not ours yet is never chmod-ed into shape.
        assert_eq!(mode(&dir), 0o777);
        chmod(&dir, 0o770);
        let e = load_or_create(&dir, me()).unwrap_err();
        assert!(e.contains("group-writable (mode 0770)"), "{e}");
    }

    #[test]
    fn a_file_or_folder_of_another_user_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        load_or_create(&dir, me()).unwrap();
        let file = dir.join(FILE_NAME);
        // Judged as another user: every check compares with the uid it is given.
        let e = load_or_create(&dir, me().wrapping_add(4242)).unwrap_err();
        assert!(e.contains(&dir.display().to_string()), "{e}");
        assert!(e.contains(&format!("owned by uid {}", me())), "{e}");
        if me() == 0 {
            // As root, hand the file (then the folder) to someone else for real.
            let other = 4242;
            std::os::unix::fs::chown(&file, Some(other), None).unwrap();
            let e = load_or_create(&dir, 0).unwrap_err();
            assert!(e.contains(&file.display().to_string()), "{e}");
            assert!(
                e.contains("owned by uid 4242, not by this server's user (uid 0)"),
                "{e}"
            );
            std::os::unix::fs::chown(&file, Some(0), None).unwrap();
            std::os::unix::fs::chown(&dir, Some(other), None).unwrap();
            let e = load_or_create(&dir, 0).unwrap_err();
            assert!(e.contains(&dir.display().to_string()), "{e}");
            assert!(e.contains("owned by uid 4242"), "{e}");
            std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
            assert!(load_or_create(&dir, 0).is_ok());
        }
    }

    #[test]
    fn a_path_that_is_not_a_folder_or_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let not_dir = tmp.path().join("state");
        std::fs::write(&not_dir, "x").unwrap();
        assert!(load_or_create(&not_dir, me())
            .unwrap_err()
            .contains("not a folder"));
        let dir = tmp.path().join("state2");
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o700);
        std::fs::create_dir(dir.join(FILE_NAME)).unwrap();
        chmod(&dir.join(FILE_NAME), 0o700);
        assert!(load_or_create(&dir, me())
            .unwrap_err()
            .contains("not a regular file"));
    }
}
