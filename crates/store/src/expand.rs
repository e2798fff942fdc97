//! The expand/contract rule of migrations, checked (docs/operations.md, "Upgrades"): migrations
//! run while replicas of the previous version still serve, so a migration may only add. A step
//! the previous version could not survive — dropping, renaming or retyping what it reads or
//! writes, requiring a value it does not write, a constraint it may violate, or taking its
//! rights — is a *contract* step, allowed only in a migration that says, in a line comment
//!
//! ```sql
//! -- contract: safe after <release>: <what the older version needed, and why it no longer runs>
//! ```
//!
//! after which release it is safe (the release that stopped using what it removes; every replica
//! must run that release or a later one before this migration runs).
//!
//! The check reads SQL text, not a parse tree: comments, string literals and dollar-quoted
//! bodies are blanked, the rest is split into statements and matched. It knows which tables the
//! earlier migrations and the migration itself created, so tightening a table made in the same
//! migration is not a contract step. It cannot see what a replaced function or a new trigger on
//! an existing table does to the older version's writes; those stay for review.

use std::collections::HashSet;

/// A contract step found in a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What it does, for people.
    pub what: &'static str,
    /// The statement, blanked and shortened.
    pub statement: String,
}

/// A migration's contract marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The release after which the migration is safe.
    pub release: String,
    /// Why.
    pub reason: String,
}

/// One migration, checked.
#[derive(Debug, Clone)]
pub struct Checked {
    pub version: i64,
    pub findings: Vec<Finding>,
    /// The marker, if the migration has a `-- contract:` line: parsed, or why it does not parse.
    pub marker: Option<Result<Marker, String>>,
}

/// Checks `migrations` (version and SQL): each one's contract steps and its marker. A table the
/// migration itself creates is new to every version, so tightening it is not a contract step;
/// any other table may be the older version's.
///
/// Dropping an index that an earlier migration (or this one) created without `unique` is not a
/// contract step either: no statement fails without it, it only runs slower.
pub fn check(migrations: &[(i64, &str)]) -> Vec<Checked> {
    let mut plain_indexes = HashSet::new();
    migrations
        .iter()
        .map(|&(version, sql)| {
            let statements = statements(sql);
            let created_here: HashSet<String> =
                statements.iter().filter_map(|s| created_table(s)).collect();
            let mut here = Here {
                tables: created_here,
                columns: HashSet::new(),
            };
            let mut findings = Vec::new();
            for statement in &statements {
                if let Some(name) = plain_index(statement) {
                    plain_indexes.insert(name);
                }
                here.columns.extend(added_columns(statement));
                if let Some(finding) = contract_step(statement, &here, &plain_indexes) {
                    findings.push(finding);
                }
            }
            Checked {
                version,
                findings,
                marker: marker(sql),
            }
        })
        .collect()
}

/// The marker line of `sql`, if it has one.
pub fn marker(sql: &str) -> Option<Result<Marker, String>> {
    let line = sql
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("--") && l[2..].trim_start().starts_with("contract:"))?;
    let body = line[2..].trim_start()["contract:".len()..].trim();
    let parsed = body
        .strip_prefix("safe after ")
        .and_then(|rest| rest.split_once(": "))
        .map(|(release, reason)| (release.trim(), reason.trim()))
        .filter(|(release, reason)| !release.is_empty() && !reason.is_empty());
    Some(match parsed {
        Some((release, reason)) => Ok(Marker {
            release: release.to_owned(),
            reason: reason.to_owned(),
        }),
        None => Err(format!(
            "{line:?} is not `-- contract: safe after <release>: <reason>`"
        )),
    })
}

/// The statements of `sql`, lower case, single-spaced, with comments, string literals and
/// dollar-quoted bodies blanked (`''` and `$$$$`).
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '-' && next == Some('-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            current.push(' ');
            continue;
        }
        if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
            current.push(' ');
            continue;
        }
        if c == '\'' {
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    // '' inside a literal is a quote.
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            current.push_str("''");
            continue;
        }
        if c == '$' {
            // $tag$ … $tag$ (the tag may be empty).
            let tag_end = chars[i + 1..]
                .iter()
                .position(|&t| t == '$')
                .map(|p| i + 1 + p)
                .filter(|&end| {
                    chars[i + 1..end]
                        .iter()
                        .all(|t| t.is_alphanumeric() || *t == '_')
                });
            if let Some(end) = tag_end {
                let tag: String = chars[i..=end].iter().collect();
                let rest: String = chars[end + 1..].iter().collect();
                let close = rest.find(&tag).map_or(rest.len(), |p| p + tag.len());
                i = end + 1 + rest[..close].chars().count();
                current.push_str("$$$$");
                continue;
            }
        }
        if c == ';' {
            push_statement(&mut out, &current);
            current.clear();
        } else {
            current.push(c);
        }
        i += 1;
    }
    push_statement(&mut out, &current);
    out
}

fn push_statement(out: &mut Vec<String>, text: &str) {
    let normal = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    if !normal.is_empty() {
        out.push(normal);
    }
}

/// The words after `prefix` at the start of `statement`, skipping `if [not] exists` and `only`.
fn target<'s>(statement: &'s str, prefix: &str) -> Option<&'s str> {
    let rest = statement.strip_prefix(prefix)?;
    let rest = rest
        .trim_start_matches("if not exists ")
        .trim_start_matches("if exists ")
        .trim_start_matches("only ");
    rest.split([' ', '(']).next().map(unqualified)
}

fn unqualified(name: &str) -> &str {
    name.trim_start_matches("public.").trim_matches('"')
}

/// What the migration being checked made: tables, and columns (`table.column`) it added to
/// existing ones.
struct Here {
    tables: HashSet<String>,
    columns: HashSet<String>,
}

/// The `table.column`s an `alter table … add [column] …` adds.
fn added_columns(statement: &str) -> Vec<String> {
    let Some(table) = target(statement, "alter table ") else {
        return Vec::new();
    };
    statement
        .split(" add ")
        .skip(1)
        .filter(|clause| !is_constraint(clause))
        .filter_map(|clause| {
            let clause = clause.trim_start_matches("column ");
            let clause = clause.trim_start_matches("if not exists ");
            clause.split(' ').next()
        })
        .map(|column| format!("{table}.{column}"))
        .collect()
}

fn is_constraint(clause: &str) -> bool {
    [
        "constraint ",
        "check",
        "unique",
        "primary ",
        "foreign ",
        "exclude",
    ]
    .iter()
    .any(|k| clause.starts_with(k))
}

/// The name of the index a `create index` without `unique` makes.
fn plain_index(statement: &str) -> Option<String> {
    let rest = statement
        .strip_prefix("create index ")?
        .trim_start_matches("concurrently ");
    target(&format!("x {rest}"), "x ")
        .filter(|name| *name != "on")
        .map(str::to_owned)
}

fn created_table(statement: &str) -> Option<String> {
    ["create table ", "create unlogged table "]
        .iter()
        .find_map(|prefix| target(statement, prefix))
        .map(str::to_owned)
}

/// Why `statement` is a contract step, if it is one.
fn contract_step(statement: &str, here: &Here, plain_indexes: &HashSet<String>) -> Option<Finding> {
    let created_here = &here.tables;
    let found = |what| {
        let mut shown: String = statement.chars().take(160).collect();
        if shown.len() < statement.len() {
            shown.push('…');
        }
        Some(Finding {
            what,
            statement: shown,
        })
    };
    if let Some(names) = statement.strip_prefix("drop index ") {
        let names = names
            .trim_start_matches("concurrently ")
            .trim_start_matches("if exists ");
        let plain = names
            .trim_end_matches(" cascade")
            .trim_end_matches(" restrict")
            .split(", ")
            .all(|name| plain_indexes.contains(unqualified(name.trim())));
        return if plain {
            None
        } else {
            found("drops an index that may be unique (the older version's ON CONFLICT needs it)")
        };
    }
    if statement.starts_with("drop ") {
        return found("drops what the older version may use");
    }
    if statement.starts_with("revoke ") {
        return found("takes rights the older version may use");
    }
    if statement.starts_with("alter ") && statement.contains(" rename ") {
        return found("renames what the older version uses by its old name");
    }
    if let Some(table) = target(statement, "alter table ") {
        if created_here.contains(table) {
            return None;
        }
        let words = format!(" {statement} ");
        if words.contains(" drop ") {
            return found("drops a column, constraint or default the older version may use");
        }
        if retypes(statement) {
            return found("changes a column's type under the older version");
        }
        if words.contains(" set not null ") {
            return found("requires a value the older version may not write");
        }
        for clause in words.split(" add ").skip(1) {
            if !is_constraint(clause) {
                if clause.contains(" not null")
                    && !clause.contains(" default ")
                    && !clause.contains(" generated ")
                {
                    return found("adds a NOT NULL column without a default: the older version's inserts fail");
                }
            } else if !clause
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|word| here.columns.contains(&format!("{table}.{word}")))
            {
                // A constraint on a column this migration adds binds what only the new version
                // writes (the older one leaves it NULL or its default, which the constraint must
                // let through). Any other binds the older version's writes, NOT VALID too: it
                // spares the rows there, not new ones.
                return found("adds a constraint the older version's writes may violate");
            }
        }
        return None;
    }
    if statement.starts_with("create unique index ") {
        let on = statement
            .split(" on ")
            .nth(1)
            .and_then(|rest| rest.trim_start_matches("only ").split([' ', '(']).next())
            .map(unqualified);
        if on.is_some_and(|table| !created_here.contains(table)) {
            return found("adds a uniqueness the older version's writes may violate");
        }
    }
    None
}

/// `alter [column] NAME [set data] type` inside an `alter table`.
fn retypes(statement: &str) -> bool {
    let words: Vec<&str> = statement.split(' ').collect();
    (2..words.len()).any(|i| {
        if words[i] != "alter" {
            return false;
        }
        let mut j = i + 1;
        if words.get(j) == Some(&"column") {
            j += 1;
        }
        let after = &words[(j + 1).min(words.len())..];
        after.first() == Some(&"type") || after.starts_with(&["set", "data", "type"])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(sql: &str) -> Vec<&'static str> {
        let first = "CREATE TABLE old (id int PRIMARY KEY, a text);
            CREATE INDEX old_a ON old (a); CREATE UNIQUE INDEX old_unique ON old (a);";
        let checked = check(&[(1, first), (2, sql)]);
        assert_eq!(checked[0].findings, [], "a new table's indexes");
        checked[1].findings.iter().map(|f| f.what).collect()
    }

    #[test]
    fn adding_is_expand() {
        for sql in [
            "CREATE TABLE fresh (id int PRIMARY KEY, b text NOT NULL);",
            "ALTER TABLE old ADD COLUMN b text;",
            "ALTER TABLE old ADD COLUMN b text NOT NULL DEFAULT '';",
            "ALTER TABLE old ADD COLUMN IF NOT EXISTS n bigint NOT NULL DEFAULT 0, ADD COLUMN m text;",
            "CREATE INDEX old_a ON old (a);",
            "CREATE INDEX IF NOT EXISTS old_b ON old (a); DROP INDEX IF EXISTS old_b;",
            "DROP INDEX IF EXISTS old_a;",
            "CREATE TABLE fresh (id int); ALTER TABLE fresh ADD CONSTRAINT c CHECK (id > 0);",
            "CREATE TABLE fresh (id int); ALTER TABLE fresh ALTER COLUMN id SET NOT NULL;",
            "CREATE TABLE fresh (id int); CREATE UNIQUE INDEX f ON fresh (id);",
            "GRANT SELECT ON old TO someone;",
            "INSERT INTO old VALUES (1, 'drop table old; alter table old rename to x');",
            "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN DROP TABLE old; RETURN NULL; END $$;",
            "-- DROP TABLE old;\nALTER TABLE old ADD COLUMN c text; /* ALTER TABLE old DROP COLUMN a */",
            "COMMENT ON COLUMN old.a IS 'the old name; rename later';",
            "ALTER TABLE old ADD COLUMN type text, ADD COLUMN kind text DEFAULT 'type';",
            "ALTER TABLE old ALTER COLUMN a SET DEFAULT 'x';",
            "ALTER TABLE old ADD COLUMN b text, ADD CONSTRAINT b_short CHECK (length(b) < 10 AND a <> b);",
            "ALTER TABLE old ADD COLUMN b int; ALTER TABLE old ADD FOREIGN KEY (b) REFERENCES old (id);",
        ] {
            assert_eq!(steps(sql), Vec::<&str>::new(), "{sql}");
        }
    }

    #[test]
    fn dropping_renaming_retyping_and_tightening_are_contract() {
        for sql in [
            "DROP TABLE old;",
            "DROP FUNCTION IF EXISTS something();",
            "DROP INDEX old_unique;",
            "ALTER TABLE old DROP COLUMN a;",
            "ALTER TABLE old DROP CONSTRAINT old_pkey;",
            "ALTER TABLE old ALTER COLUMN a DROP DEFAULT;",
            "ALTER TABLE old RENAME COLUMN a TO b;",
            "ALTER TABLE old RENAME TO older;",
            "ALTER FUNCTION f() RENAME TO g;",
            "ALTER TABLE old ALTER COLUMN a TYPE bigint USING a::bigint;",
            "ALTER TABLE old ALTER a SET DATA TYPE varchar(10);",
            "ALTER TABLE old ALTER a TYPE text;",
            "ALTER TABLE old ALTER COLUMN a SET NOT NULL;",
            "ALTER TABLE old ADD COLUMN b text NOT NULL;",
            "ALTER TABLE public.old ADD CONSTRAINT a_short CHECK (length(a) < 10);",
            "ALTER TABLE old ADD UNIQUE (a);",
            "CREATE UNIQUE INDEX old_a ON old (a);",
            "REVOKE INSERT ON old FROM someone;",
        ] {
            assert_eq!(steps(sql).len(), 1, "{sql}");
        }
    }

    #[test]
    fn the_marker_names_a_release_and_a_reason() {
        assert_eq!(
            marker("-- contract: safe after migration 30: nothing reads old.a since then\nALTER TABLE old DROP COLUMN a;"),
            Some(Ok(Marker {
                release: "migration 30".into(),
                reason: "nothing reads old.a since then".into()
            }))
        );
        assert!(matches!(marker("--contract: drop it"), Some(Err(_))));
        assert!(matches!(
            marker("-- contract: safe after : why"),
            Some(Err(_))
        ));
        assert_eq!(marker("ALTER TABLE old DROP COLUMN a;"), None);
    }
}
