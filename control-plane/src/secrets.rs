//! The zero-setup secrets file, `<data_dir>/secrets.json`.
//!
//! Without `REDIS_URL` (everything in one process) the master key and the JWT secret may be
//! left unset: on first start we generate both and write them to this file (mode 0600, created
//! exclusively so two processes starting at once cannot both write it), and later starts read
//! them back, so sealed provider keys and issued tokens stay valid across restarts. A value set
//! in the environment always wins over the file. In distributed mode both must come from the
//! environment, because every data-plane node needs the same master key.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use shared::crypto::MasterKey;

const FILE_NAME: &str = "secrets.json";

/// What the file holds.
#[derive(Serialize, Deserialize)]
struct SecretsFile {
    /// 64 hex characters.
    master_key: String,
    /// Base64 of 64 random bytes.
    jwt_secret: String,
}

/// Secrets loaded from (or just written to) the file.
pub struct FileSecrets {
    pub master_key: MasterKey,
    pub jwt_secret: Vec<u8>,
    pub path: PathBuf,
    /// True when this start created the file.
    pub created: bool,
}

impl std::fmt::Debug for FileSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSecrets")
            .field("path", &self.path)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// Reads `<data_dir>/secrets.json`, creating it with fresh random secrets if it does not exist.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<FileSecrets> {
    let path = data_dir.join(FILE_NAME);
    match read(&path) {
        Ok(Some(s)) => return Ok(s),
        Ok(None) => {}
        Err(e) => return Err(e),
    }
    let master_key = MasterKey::generate();
    let mut jwt = [0u8; 64];
    rand::fill(&mut jwt[..]);
    let body = serde_json::to_vec_pretty(&SecretsFile {
        master_key: master_key.to_hex(),
        jwt_secret: STANDARD.encode(jwt),
    })
    .context("encoding the secrets file")?;
    match create_private(&path, &body) {
        Ok(()) => Ok(FileSecrets {
            master_key,
            jwt_secret: jwt.to_vec(),
            path,
            created: true,
        }),
        // Another process created it between our read and our create: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read(&path)?.with_context(|| format!("{} vanished while starting", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

fn read(path: &Path) -> anyhow::Result<Option<FileSecrets>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    warn_if_readable_by_others(path);
    // Parse errors must not echo the file's content.
    let file: SecretsFile = serde_json::from_str(&text)
        .map_err(|_| anyhow::anyhow!("{} is not a valid secrets file (delete it to start over; provider keys sealed with it become unreadable)", path.display()))?;
    let master_key = MasterKey::parse(&file.master_key)
        .map_err(|_| anyhow::anyhow!("{}: master_key is invalid", path.display()))?;
    let jwt_secret = STANDARD
        .decode(file.jwt_secret.trim())
        .map_err(|_| anyhow::anyhow!("{}: jwt_secret is not base64", path.display()))?;
    if jwt_secret.len() < 32 {
        bail!("{}: jwt_secret must hold at least 32 bytes", path.display());
    }
    Ok(Some(FileSecrets {
        master_key,
        jwt_secret,
        path: path.to_owned(),
        created: false,
    }))
}

/// Creates `path` exclusively with owner-only permissions and writes `body` durably.
fn create_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path)?;
    file.write_all(body)?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "secrets file is readable by other users; chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn created_once_then_reused_with_private_permissions() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = load_or_create(dir.path()).expect("created");
        assert!(first.created);
        let again = load_or_create(dir.path()).expect("read back");
        assert!(!again.created);
        assert_eq!(first.master_key.to_hex(), again.master_key.to_hex());
        assert_eq!(first.jwt_secret, again.jwt_secret);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&first.path)
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn corrupt_file_is_refused_without_echoing_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join(FILE_NAME),
            "{\"master_key\": \"topsecretvalue\"",
        )
        .expect("write");
        let err = format!("{:#}", load_or_create(dir.path()).expect_err("refused"));
        assert!(!err.contains("topsecretvalue"), "{err}");
    }
}
