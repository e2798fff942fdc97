//! Every error the server can answer has words in the console (`console/src/errors.json`), in
//! Chinese and English: each gRPC status code, each command refusal as the gRPC code the query
//! service maps it to, each `whistle-reason`, and each reason a report is rejected for. A new code
//! on the server without words fails here, before a person meets it as "FAILED_PRECONDITION: …".

use std::path::Path;

use serde_json::Value;
use tonic::{Code, Status};
use whistle_dispatch::validate::Reason;
use whistle_proto::v1::CommandErrorCode;

fn words() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../services/whistle-query/console/src/errors.json");
    let text = std::fs::read_to_string(&path).expect("reading the console's errors.json");
    serde_json::from_str(&text).expect("errors.json is JSON")
}

/// The name the console looks a code up by (`codeName` in console/src/errors.ts).
fn code_name(code: Code) -> String {
    let name = match code {
        Code::Cancelled => return "CANCELLED".into(),
        other => format!("{other:?}"),
    };
    let mut snake = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            snake.push('_');
        }
        snake.push(c.to_ascii_uppercase());
    }
    snake
}

/// The entry `table.key` has a Chinese sentence (with Chinese in it) and an English one (without),
/// neither showing a code.
fn assert_words(words: &Value, table: &str, key: &str) {
    let entry = &words[table][key];
    let zh = entry["zh"].as_str().unwrap_or_default();
    let en = entry["en"].as_str().unwrap_or_default();
    assert!(
        zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
        "{table}.{key}: no Chinese text ({entry})"
    );
    assert!(
        en.len() > 10 && en.is_ascii(),
        "{table}.{key}: no English text ({entry})"
    );
    for text in [zh, en] {
        assert!(
            !text.contains('_') && !text.contains(&code_name(Code::Internal)),
            "{table}.{key}: a code in the words: {text}"
        );
        assert!(
            text.ends_with('。') || text.ends_with('.'),
            "{table}.{key}: not a sentence: {text}"
        );
    }
}

#[test]
fn every_error_the_server_can_return_has_chinese_and_english_words() {
    let words = words();
    // Every status code a gRPC answer can carry (OK is no error).
    for value in 1..=16 {
        let code = Code::from_i32(value);
        assert_words(&words, "grpc", &code_name(code));
    }
    // A refused command reaches the console as the code the query service maps it to.
    for value in 1.. {
        let Ok(code) = CommandErrorCode::try_from(value) else {
            break;
        };
        let status = Status::from(whistle_query::Error::Refused(code, "why".into()));
        assert_words(&words, "command", &code_name(status.code()));
    }
    for reason in whistle_query::REASONS {
        assert_words(&words, "reason", reason);
    }
    for reason in Reason::ALL {
        assert_words(&words, "rejected", reason.as_str());
    }
    assert_words(&words, "network", "offline");
}

#[test]
fn the_console_names_codes_as_the_test_does() {
    assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
    assert_eq!(code_name(Code::Cancelled), "CANCELLED");
    assert_eq!(code_name(Code::Unauthenticated), "UNAUTHENTICATED");
}
