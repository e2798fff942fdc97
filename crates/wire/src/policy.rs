//! Loading the policy every process must agree on: by builtin name or from a TOML file.

use std::path::PathBuf;

use whistle_domain::policy::{Policy, Source};

use crate::PolicyError;

/// Loads a policy by builtin name (`ordos`, `ordos-demo`) or file path; a file's `base` is
/// resolved next to it.
pub fn load(name_or_path: &str) -> Result<Policy, PolicyError> {
    if let Some(policy) = whistle_domain::policy::builtin(name_or_path) {
        return Ok(policy);
    }
    source(name_or_path)?
        .load()
        .map_err(|source| PolicyError::Invalid {
            path: PathBuf::from(name_or_path),
            source,
        })
}

/// Reads a policy by builtin name or file path as written — the file's text and its base's —
/// without validating it ([`Source::load`] does), so it can be stored as a version.
pub fn source(name_or_path: &str) -> Result<Source, PolicyError> {
    if let Some(source) = Source::builtin(name_or_path) {
        return Ok(source);
    }
    let path = PathBuf::from(name_or_path);
    let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Unreadable {
        name: name_or_path.to_owned(),
        source,
    })?;
    let dir = path.parent().map(PathBuf::from).unwrap_or_default();
    Source::read(&text, |base| std::fs::read_to_string(dir.join(base)).ok())
        .map_err(|source| PolicyError::Invalid { path, source })
}

/// Whether `name_or_path` names a builtin policy (which never changes) rather than a file.
pub fn is_builtin(name_or_path: &str) -> bool {
    whistle_domain::policy::builtin(name_or_path).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load_by_name() {
        assert!(load("ordos").is_ok());
        assert!(load("ordos-demo").is_ok());
    }

    #[test]
    fn every_policy_file_of_the_repository_loads() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policy");
        let mut loaded = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                load(path.to_str().unwrap()).unwrap_or_else(|e| panic!("{path:?}: {e}"));
                loaded += 1;
            }
        }
        assert!(loaded >= 3, "{loaded} policy files");
        let bench = load(&format!("{dir}/ordos-bench.toml")).unwrap();
        assert_eq!(bench.clusters().window, chrono::TimeDelta::minutes(2));
        // Compressed 60 times: the cluster window too, and the duplicate window still spans a
        // ten-minute run.
        let timers = load(&format!("{dir}/ordos-bench-timers.toml")).unwrap();
        assert_eq!(timers.clusters().window, chrono::TimeDelta::minutes(2));
        assert_eq!(timers.duplicates().window, chrono::TimeDelta::minutes(24));
    }

    #[test]
    fn a_source_reads_the_file_and_its_base_and_loads_as_the_file_does() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policy");
        let demo = source(&format!("{dir}/ordos-demo.toml")).unwrap();
        assert_eq!(demo.base.as_ref().map(|b| b.0.as_str()), Some("ordos.toml"));
        assert_eq!(demo.load().unwrap(), load("ordos-demo").unwrap());
        assert_eq!(
            source("ordos").unwrap().load().unwrap(),
            load("ordos").unwrap()
        );
    }

    #[test]
    fn a_missing_file_is_unreadable() {
        let error = load("/nonexistent/policy.toml").unwrap_err();
        assert!(
            matches!(error, PolicyError::Unreadable { ref name, .. } if name == "/nonexistent/policy.toml")
        );
    }

    #[test]
    fn an_invalid_file_names_its_path_and_keeps_the_cause() {
        let path =
            std::env::temp_dir().join(format!("whistle-wire-policy-{}.toml", std::process::id()));
        std::fs::write(&path, "not = [valid").unwrap();
        let error = load(path.to_str().unwrap()).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        match error {
            PolicyError::Invalid { path: at, source } => {
                assert_eq!(at, path);
                assert!(
                    matches!(source, whistle_domain::policy::Error::Toml { .. }),
                    "{source:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
