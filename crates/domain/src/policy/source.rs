//! A policy as written — its file's text and the base it names — and the difference between two
//! of them, as the operator who approves a new version reads it (`whistle policy diff`).

use std::collections::BTreeMap;

use super::{Error, Policy, ORDOS, ORDOS_DEMO};

/// A policy file's text and, when it names a `base`, that base's name and text: everything
/// needed to load it again, so a stored version does not depend on files that may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub text: String,
    pub base: Option<(String, String)>,
}

impl Source {
    /// Reads the `base` the text names (if any) through `resolve_base`; refuses a text that is
    /// not TOML or names a base that cannot be found. Nothing else is checked: see [`Source::load`].
    pub fn read(
        text: &str,
        resolve_base: impl Fn(&str) -> Option<String>,
    ) -> Result<Source, Error> {
        let table = table(text, "policy")?;
        let base = match table.get("base") {
            None => None,
            Some(toml::Value::String(name)) => {
                let base_text =
                    resolve_base(name).ok_or_else(|| Error::MissingBase(name.clone()))?;
                Some((name.clone(), base_text))
            }
            Some(other) => {
                return Err(Error::Toml {
                    file: "policy".into(),
                    message: format!("base: expected the name of a file, found {other}"),
                })
            }
        };
        Ok(Source {
            text: text.to_owned(),
            base,
        })
    }

    /// A policy compiled in, by name (`ordos`, `ordos-demo`).
    pub fn builtin(name: &str) -> Option<Source> {
        let text = match name {
            "ordos" => ORDOS,
            "ordos-demo" => ORDOS_DEMO,
            _ => return None,
        };
        Some(
            Source::read(text, |base| {
                (base == "ordos.toml").then(|| ORDOS.to_owned())
            })
            .expect("the builtin policies name their base"),
        )
    }

    /// Validates the policy (every check of [`Policy::parse`]).
    pub fn load(&self) -> Result<Policy, Error> {
        Policy::parse(&self.text, |name| {
            self.base
                .as_ref()
                .filter(|(base, _)| base == name)
                .map(|(_, text)| text.clone())
        })
    }

    /// The policy's keys as they apply: the file's top-level keys over its base's, as
    /// [`Policy::parse`] merges them, flattened to one line per leaf value (see [`diff`]).
    pub fn effective(&self) -> Result<BTreeMap<String, String>, Error> {
        let mut merged = match &self.base {
            Some((name, text)) => table(text, name)?,
            None => toml::Table::new(),
        };
        for (key, value) in table(&self.text, "policy")? {
            merged.insert(key, value);
        }
        merged.remove("base");
        let mut flat = BTreeMap::new();
        for (key, value) in &merged {
            flatten(key, value, &mut flat);
        }
        Ok(flat)
    }
}

fn table(text: &str, file: &str) -> Result<toml::Table, Error> {
    text.parse::<toml::Table>().map_err(|e| Error::Toml {
        file: file.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

/// One leaf per line: tables by their keys (`sla.general.resolve`), lists of tables with a `code`
/// by it (`category[heating.no_heat].sla`, so reordering the file changes nothing and a new
/// category is one addition), other lists whole.
fn flatten(path: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                flatten(&format!("{path}.{key}"), value, out);
            }
        }
        toml::Value::Array(items)
            if !items.is_empty() && items.iter().all(|item| code(item).is_some()) =>
        {
            for item in items {
                let code = code(item).expect("checked above");
                let toml::Value::Table(table) = item else {
                    unreachable!("only a table has a code")
                };
                for (key, value) in table.iter().filter(|(key, _)| *key != "code") {
                    flatten(&format!("{path}[{code}].{key}"), value, out);
                }
            }
        }
        other => {
            out.insert(path.to_owned(), other.to_string());
        }
    }
}

fn code(item: &toml::Value) -> Option<&str> {
    match item {
        toml::Value::Table(table) => table.get("code").and_then(|c| c.as_str()),
        _ => None,
    }
}

/// One difference between two policies, at a flattened key (see [`Source::effective`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Added {
        key: String,
        value: String,
    },
    Removed {
        key: String,
        value: String,
    },
    Changed {
        key: String,
        from: String,
        to: String,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Added { key, value } => write!(f, "+ {key} = {value}"),
            Change::Removed { key, value } => write!(f, "- {key} = {value}"),
            Change::Changed { key, from, to } => write!(f, "~ {key} = {from} → {to}"),
        }
    }
}

/// What changes from `old` to `new`, by key in sorted order; empty when they apply the same
/// figures (the file's layout, comments, order of categories and a key moved between file and base
/// do not count).
pub fn diff(old: &Source, new: &Source) -> Result<Vec<Change>, Error> {
    let (old, new) = (old.effective()?, new.effective()?);
    let mut changes = Vec::new();
    for (key, from) in &old {
        match new.get(key) {
            None => changes.push(Change::Removed {
                key: key.clone(),
                value: from.clone(),
            }),
            Some(to) if to != from => changes.push(Change::Changed {
                key: key.clone(),
                from: from.clone(),
                to: to.clone(),
            }),
            Some(_) => {}
        }
    }
    for (key, value) in &new {
        if !old.contains_key(key) {
            changes.push(Change::Added {
                key: key.clone(),
                value: value.clone(),
            });
        }
    }
    changes.sort_by(|a, b| key_of(a).cmp(key_of(b)));
    Ok(changes)
}

fn key_of(change: &Change) -> &str {
    match change {
        Change::Added { key, .. } | Change::Removed { key, .. } | Change::Changed { key, .. } => {
            key
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ordos() -> Source {
        Source::builtin("ordos").unwrap()
    }

    fn edited(from: &str, to: &str) -> Source {
        let text = ordos().text;
        assert!(text.contains(from), "{from:?} is in ordos.toml");
        Source::read(&text.replacen(from, to, 1), |_| None).unwrap()
    }

    #[test]
    fn the_same_policy_has_no_difference() {
        assert_eq!(diff(&ordos(), &ordos()).unwrap(), vec![]);
        // Layout and comments are not figures.
        let reformatted = Source::read(&ordos().text.replace(" = ", "="), |_| None).unwrap();
        assert_eq!(diff(&ordos(), &reformatted).unwrap(), vec![]);
    }

    #[test]
    fn a_changed_figure_is_one_line_with_both_values() {
        let new = edited("accept = \"30m\"", "accept = \"20m\"");
        let new = Source::read(
            &new.text
                .replace("version = \"ordos-2026.1\"", "version = \"ordos-2026.2\""),
            |_| None,
        )
        .unwrap();
        let changes = diff(&ordos(), &new).unwrap();
        assert_eq!(
            changes,
            vec![
                Change::Changed {
                    key: "deadlines.accept".into(),
                    from: "\"30m\"".into(),
                    to: "\"20m\"".into()
                },
                Change::Changed {
                    key: "version".into(),
                    from: "\"ordos-2026.1\"".into(),
                    to: "\"ordos-2026.2\"".into()
                },
            ]
        );
        assert_eq!(
            changes[0].to_string(),
            "~ deadlines.accept = \"30m\" → \"20m\""
        );
    }

    #[test]
    fn categories_are_compared_by_code_not_by_position() {
        let old = ordos();
        // Removing one category is its keys removed, nothing else.
        let text = old.text.clone();
        let start = text.find("[[category]]").unwrap();
        let next = start + 1 + text[start + 1..].find("[[category]]").unwrap();
        let first_code = text[start..next]
            .lines()
            .find_map(|l| l.strip_prefix("code = "))
            .unwrap()
            .trim_matches('"')
            .to_owned();
        let without_first =
            Source::read(&format!("{}{}", &text[..start], &text[next..]), |_| None).unwrap();
        let changes = diff(&old, &without_first).unwrap();
        assert!(!changes.is_empty());
        for change in &changes {
            assert!(
                matches!(change, Change::Removed { key, .. } if key.starts_with(&format!("category[{first_code}]."))),
                "{change}"
            );
        }
        // Moving it to the end changes nothing.
        let moved = Source::read(
            &format!(
                "{}{}\n{}",
                &text[..start],
                &text[next..],
                &text[start..next]
            ),
            |_| None,
        )
        .unwrap();
        assert_eq!(diff(&old, &moved).unwrap(), vec![]);
    }

    #[test]
    fn a_base_applies_under_the_file() {
        let demo = Source::builtin("ordos-demo").unwrap();
        assert_eq!(demo.base.as_ref().unwrap().0, "ordos.toml");
        let changes = diff(&ordos(), &demo).unwrap();
        let keys: Vec<&str> = changes.iter().map(key_of).collect();
        assert!(keys.contains(&"time_divisor"), "{keys:?}");
        assert!(keys.contains(&"version"), "{keys:?}");
        // The base's categories are the demo's too.
        assert!(!keys.iter().any(|k| k.starts_with("category[")), "{keys:?}");
        assert_eq!(demo.load().unwrap().version(), "ordos-2026.1-demo");
    }

    #[test]
    fn a_source_refuses_what_it_cannot_read() {
        assert!(matches!(
            Source::read("version = ", |_| None),
            Err(Error::Toml { .. })
        ));
        assert_eq!(
            Source::read("base = \"other.toml\"\nversion = \"v\"", |_| None),
            Err(Error::MissingBase("other.toml".into()))
        );
        assert!(matches!(
            Source::read("base = 3\nversion = \"v\"", |_| None),
            Err(Error::Toml { .. })
        ));
        // Read but invalid: load runs the policy's checks.
        let empty_summon = edited(
            "summon = [\"heating\", \"housing_construction\"]",
            "summon = []",
        );
        let error = empty_summon.load().unwrap_err();
        assert!(matches!(error, Error::EmptySummon(_)), "{error}");
    }
}
