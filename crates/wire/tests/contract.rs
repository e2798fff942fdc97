//! `docs/ARCHITECTURE.md`'s "Contracts" table against the wire crate: every subject pattern there
//! is one this crate builds, its event kinds are exactly this crate's, its verbs are `Verb::ALL`,
//! and its header names are this crate's constants.

use std::collections::BTreeSet;

use whistle_wire::{headers, kind, subject, Verb};

/// The section of the document between `## Contracts` and the next `## ` heading.
fn contracts(doc: &str) -> &str {
    let start = doc.find("\n## Contracts\n").expect("a Contracts section");
    let rest = &doc[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

/// The table rows of the section, as (what, where).
fn rows(section: &str) -> Vec<(&str, &str)> {
    section
        .lines()
        .filter(|line| line.starts_with('|') && !line.starts_with("| ---"))
        .skip(1)
        .filter_map(|line| {
            let line = line.trim().trim_start_matches('|').trim_end_matches('|');
            let (what, place) = line.split_once('|')?;
            Some((what.trim(), place.trim()))
        })
        .collect()
}

/// The `code spans` of a text.
fn spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The subject patterns the crate builds, with placeholders where the builders take values.
fn built_patterns() -> BTreeSet<String> {
    let grid = "150602001002003".parse().expect("a grid code");
    let report = subject::report(&grid)
        .replace("150602001002003", "{grid}")
        .replace("150602001002", "{community}")
        .replace("150602001", "{street}")
        .replace("150602", "{district}");
    let command =
        subject::command(Verb::Accept, "{person}").replace(Verb::Accept.as_str(), "{verb}");
    [
        report,
        subject::incident_event("{district}", "{street}", "{kind}"),
        subject::task_event("{department}", "{kind}"),
        command,
        subject::rejected("{reason}"),
    ]
    .into_iter()
    .collect()
}

/// What in the section disagrees with the crate, one line each.
fn check(doc: &str) -> Vec<String> {
    let section = contracts(doc);
    let mut problems = Vec::new();
    let all_spans: Vec<&str> = spans(section);

    // Subjects: patterns with placeholders, and filters by kind.
    let built = built_patterns();
    let mut named = BTreeSet::new();
    for span in all_spans
        .iter()
        .filter(|s| s.starts_with("whistle.") && !s.starts_with("whistle.v1."))
    {
        if span.contains('{') {
            if !built.contains(*span) {
                problems.push(format!(
                    "subject pattern {span:?} is not one the wire crate builds"
                ));
            }
            named.insert(span.to_string());
        } else if span.contains('*') {
            let matches = kind::all().any(|k| subject::event_filter(None, k) == *span);
            if !matches {
                problems.push(format!(
                    "subject filter {span:?} is not one the wire crate builds"
                ));
            }
        } else {
            problems.push(format!(
                "{span:?} is neither a subject pattern nor a filter"
            ));
        }
    }
    for pattern in built.difference(&named) {
        problems.push(format!(
            "the wire crate builds {pattern:?}, which the table does not name"
        ));
    }

    // Event kinds: `family.name` spans.
    let is_kind = |s: &str| {
        s.split_once('.').is_some_and(|(a, b)| {
            let word =
                |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            word(a) && word(b)
        })
    };
    let documented: BTreeSet<&str> = all_spans.iter().copied().filter(|s| is_kind(s)).collect();
    let ours: BTreeSet<&str> = kind::all().collect();
    for k in documented.difference(&ours) {
        problems.push(format!("event kind {k:?} is not in the wire crate's kinds"));
    }
    for k in ours.difference(&documented) {
        problems.push(format!("event kind {k:?} is not named in the table"));
    }

    // Verbs: the list in parentheses after the command subject.
    match rows(section)
        .into_iter()
        .find(|(what, _)| *what == "commands")
    {
        None => problems.push("no commands row".into()),
        Some((_, place)) => {
            let listed = place
                .split_once("` (")
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(list, _)| list.split(',').map(str::trim).collect::<Vec<_>>())
                .unwrap_or_default();
            let ours: Vec<&str> = Verb::ALL.iter().map(|v| v.as_str()).collect();
            if listed != ours {
                problems.push(format!(
                    "the commands row lists verbs {listed:?}, Verb::ALL is {ours:?}"
                ));
            }
        }
    }

    // Header names: every `Whistle-*` span, and the JSON content type.
    let header_names = [
        headers::TOKEN_ID,
        headers::REJECT_REASON,
        headers::REJECT_MESSAGE,
        headers::ORIGINAL_SUBJECT,
        headers::ORIGINAL_SEQUENCE,
        headers::DELIVERY_COUNT,
        headers::ORIGINAL_SIZE,
        headers::ORIGINAL_SHA256,
    ];
    for span in all_spans.iter().filter(|s| s.starts_with("Whistle-")) {
        if !header_names.contains(span) {
            problems.push(format!("header {span:?} is not one of the wire crate's"));
        }
    }
    for name in header_names {
        if !all_spans.contains(&name) {
            problems.push(format!("header {name:?} is not named in the table"));
        }
    }
    let json = format!("{}: {}", headers::CONTENT_TYPE, headers::JSON);
    if !all_spans.contains(&json.as_str()) {
        problems.push(format!("{json:?} is not named in the table"));
    }
    problems
}

fn architecture() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ARCHITECTURE.md");
    std::fs::read_to_string(path).expect("docs/ARCHITECTURE.md is readable")
}

#[test]
fn the_architecture_contract_table_is_what_the_wire_crate_builds() {
    let problems = check(&architecture());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_typo_in_the_table_is_caught() {
    let doc = architecture();
    for (right, wrong) in [
        (
            "`whistle.task.{department}.{kind}`",
            "`whistle.tasks.{department}.{kind}`",
        ),
        (
            "`whistle.event.{district}.{street}.{kind}`",
            "`whistle.event.{district}.{kind}`",
        ),
        ("`task.reminded`", "`task.remindd`"),
        ("accept, return, resolve", "accept, resolve"),
        ("`Whistle-Delivery-Count`", "`Whistle-Deliveries`"),
        (
            "`whistle.event.*.*.incident.reported`",
            "`whistle.event.*.*.incident.reportd`",
        ),
    ] {
        assert!(doc.contains(right), "the document names {right}");
        let problems = check(&doc.replacen(right, wrong, 1));
        assert!(
            !problems.is_empty(),
            "replacing {right} with {wrong} went unnoticed"
        );
    }
}
