//! Key material of a deployment, kept as files in one directory (mode 0700, each file 0600):
//! the nkey seeds of the callout's issuer account and of every service user, and JetStream's
//! encryption-at-rest key. Created on first use, then loaded unchanged, so a restart keeps its
//! identities.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use nkeys::{KeyPair, KeyPairType};
use rand::RngCore as _;

use crate::{permissions::Service, Error, Result};

/// The seeds and keys of one deployment.
pub struct Secrets {
    dir: PathBuf,
    /// Account key whose public half the server trusts as the callout's issuer; signs user JWTs.
    pub issuer: KeyPair,
    pub callout: KeyPair,
    pub dispatch: KeyPair,
    pub query: KeyPair,
    pub admin: KeyPair,
    pub revoker: KeyPair,
    /// JetStream's `cipher: chachapoly` key.
    pub jetstream_key: String,
    /// The password the nodes of a NATS cluster present to each other on their routes (the same
    /// directory is copied to every node).
    pub route_password: String,
    /// The password a province's cities present on their leaf connections to its hub: made in
    /// the hub's secrets directory and copied into each city's.
    pub leaf_password: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("dir", &self.dir)
            .field("issuer", &self.issuer.public_key())
            .finish_non_exhaustive()
    }
}

const ISSUER_FILE: &str = "auth-issuer.nk";
const JETSTREAM_KEY_FILE: &str = "jetstream.key";
const ROUTE_PASSWORD_FILE: &str = "route.password";
/// The leaf password's file, to copy from the hub's secrets directory into a city's.
pub const LEAF_PASSWORD_FILE: &str = "leaf.password";

impl Secrets {
    /// Loads the key material in `dir`, creating what is missing.
    pub fn load_or_create(dir: &Path) -> Result<Secrets> {
        fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|source| io(dir, source))?;
        let user = |service: Service| nkey(dir, &seed_file(service), KeyPairType::User);
        Ok(Secrets {
            dir: dir.to_owned(),
            issuer: nkey(dir, ISSUER_FILE, KeyPairType::Account)?,
            callout: user(Service::Callout)?,
            dispatch: user(Service::Dispatch)?,
            query: user(Service::Query)?,
            admin: user(Service::Admin)?,
            revoker: user(Service::Revoker)?,
            jetstream_key: secret_file(dir, JETSTREAM_KEY_FILE, || random(32))?,
            // URL-safe, as it travels inside the routes' URLs.
            route_password: secret_file(dir, ROUTE_PASSWORD_FILE, || random(24))?,
            // URL-safe too: it travels inside the leaf remotes' URLs.
            leaf_password: secret_file(dir, LEAF_PASSWORD_FILE, || random(24))?,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key pair a service connects with.
    pub fn service(&self, service: Service) -> &KeyPair {
        match service {
            Service::Dispatch => &self.dispatch,
            Service::Query => &self.query,
            Service::Admin => &self.admin,
            Service::Callout => &self.callout,
            Service::Revoker => &self.revoker,
        }
    }

    /// The file holding the issuer account's seed, for the callout's `--callout-issuer-file`.
    pub fn issuer_path(&self) -> PathBuf {
        self.dir.join(ISSUER_FILE)
    }

    /// The file holding a service's seed, for `--nats-nkey-file`-style options.
    pub fn seed_path(&self, service: Service) -> PathBuf {
        self.dir.join(seed_file(service))
    }
}

/// `len` random bytes, base64url without padding.
fn random(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn seed_file(service: Service) -> String {
    format!("{}.nk", service.name())
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads a seed from `dir/name`, or creates one of `kind`; refuses a seed of another kind.
fn nkey(dir: &Path, name: &str, kind: KeyPairType) -> Result<KeyPair> {
    let seed = secret_file(dir, name, || {
        KeyPair::new(kind.clone())
            .seed()
            .expect("a freshly made key pair has a seed")
    })?;
    let pair = KeyPair::from_seed(&seed).map_err(|e| Error::Secrets {
        path: dir.join(name).display().to_string(),
        why: e.to_string(),
    })?;
    if pair.key_pair_type() != kind {
        return Err(Error::Secrets {
            path: dir.join(name).display().to_string(),
            why: format!("expected a {kind:?} seed"),
        });
    }
    Ok(pair)
}

/// The trimmed content of `dir/name`, written from `make` (mode 0600, never overwritten) if the
/// file does not exist.
fn secret_file(dir: &Path, name: &str, make: impl FnOnce() -> String) -> Result<String> {
    let path = dir.join(name);
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            let value = make();
            file.write_all(format!("{value}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|source| io(&path, source))?;
            Ok(value)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = fs::metadata(&path)
                .map_err(|source| io(&path, source))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(Error::Secrets {
                    path: path.display().to_string(),
                    why: format!("readable by others (mode {:o}); chmod 600 it", mode & 0o777),
                });
            }
            let value = fs::read_to_string(&path).map_err(|source| io(&path, source))?;
            let value = value.trim().to_owned();
            if value.is_empty() {
                return Err(Error::Secrets {
                    path: path.display().to_string(),
                    why: "empty".into(),
                });
            }
            Ok(value)
        }
        Err(source) => Err(io(&path, source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("whistle-auth-secrets-{}", uuid::Uuid::now_v7()))
    }

    #[test]
    fn secrets_are_created_private_and_reloaded_unchanged() {
        let dir = temp_dir();
        let first = Secrets::load_or_create(&dir).unwrap();
        let again = Secrets::load_or_create(&dir).unwrap();
        assert_eq!(first.issuer.public_key(), again.issuer.public_key());
        assert_eq!(first.dispatch.public_key(), again.dispatch.public_key());
        assert_eq!(first.jetstream_key, again.jetstream_key);
        assert_eq!(first.route_password, again.route_password);
        assert_eq!(first.route_password.len(), 32);
        assert_eq!(first.leaf_password, again.leaf_password);
        assert_eq!(first.leaf_password.len(), 32);
        assert_ne!(first.leaf_password, first.route_password);
        assert!(first
            .route_password
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(first.issuer.public_key().starts_with('A'));
        for service in Service::ALL {
            assert!(first.service(service).public_key().starts_with('U'));
            let mode = fs::metadata(first.seed_path(service))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_ne!(first.query.public_key(), first.admin.public_key());
        let mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_world_readable_or_wrong_kind_seed_is_refused() {
        let dir = temp_dir();
        Secrets::load_or_create(&dir).unwrap();
        let admin = dir.join("admin.nk");
        fs::set_permissions(&admin, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Secrets::load_or_create(&dir).unwrap_err().to_string();
        assert!(err.contains("readable by others"), "{err}");

        fs::set_permissions(&admin, fs::Permissions::from_mode(0o600)).unwrap();
        let account_seed = KeyPair::new_account().seed().unwrap();
        fs::write(dir.join(ISSUER_FILE), KeyPair::new_user().seed().unwrap()).unwrap();
        let err = Secrets::load_or_create(&dir).unwrap_err().to_string();
        assert!(err.contains("expected a Account seed"), "{err}");
        fs::write(dir.join(ISSUER_FILE), account_seed).unwrap();
        assert!(Secrets::load_or_create(&dir).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }
}
