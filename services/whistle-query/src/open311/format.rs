//! The two formats of GeoReport v2: one document tree rendered as JSON or as XML, so every
//! answer has the same fields in both. XML follows the spec's examples: a root element, one
//! element per list item (`<services><service>…`), text escaped, UTF-8 declared.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};

/// The format a resource was asked in, from its extension (`services.json`, `requests.xml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Xml,
}

impl Format {
    /// Splits `name.json` or `name.xml` into the name and its format; anything else is `None`.
    pub fn split(file: &str) -> Option<(&str, Format)> {
        if let Some(name) = file.strip_suffix(".json") {
            Some((name, Format::Json))
        } else {
            file.strip_suffix(".xml").map(|name| (name, Format::Xml))
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json; charset=utf-8",
            Format::Xml => "text/xml; charset=utf-8",
        }
    }
}

/// A document of the spec: objects with ordered fields, lists whose XML items have a tag, text,
/// numbers and booleans, and null (an empty element in XML).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Text(String),
    Number(f64),
    Integer(i64),
    Bool(bool),
    Null,
    Object(Vec<(&'static str, Node)>),
    /// Items, each an XML element named by the tag.
    List(&'static str, Vec<Node>),
}

impl Node {
    pub fn text(value: impl Into<String>) -> Node {
        Node::Text(value.into())
    }

    /// Text, or null when empty.
    pub fn text_or_null(value: impl Into<String>) -> Node {
        let value = value.into();
        if value.is_empty() {
            Node::Null
        } else {
            Node::Text(value)
        }
    }

    /// JSON with the fields in the spec's order (a `serde_json::Map` would sort them).
    fn json(&self, out: &mut String) {
        let quoted = |text: &str| serde_json::to_string(text).expect("a string serializes");
        match self {
            Node::Text(text) => out.push_str(&quoted(text)),
            Node::Number(n) if n.is_finite() => out.push_str(&n.to_string()),
            Node::Number(_) | Node::Null => out.push_str("null"),
            Node::Integer(n) => out.push_str(&n.to_string()),
            Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Node::Object(fields) => {
                out.push('{');
                for (i, (key, node)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&quoted(key));
                    out.push(':');
                    node.json(out);
                }
                out.push('}');
            }
            Node::List(_, items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.json(out);
                }
                out.push(']');
            }
        }
    }

    fn xml(&self, out: &mut String) {
        match self {
            Node::Text(text) => escape(text, out),
            Node::Number(n) => out.push_str(&n.to_string()),
            Node::Integer(n) => out.push_str(&n.to_string()),
            Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Node::Null => {}
            Node::Object(fields) => {
                for (key, node) in fields {
                    element(key, node, out);
                }
            }
            Node::List(tag, items) => {
                for item in items {
                    element(tag, item, out);
                }
            }
        }
    }

    /// The document as bytes: JSON as is, XML under `root` with the declaration.
    pub fn render(&self, format: Format, root: &str) -> Vec<u8> {
        match format {
            Format::Json => {
                let mut out = String::new();
                self.json(&mut out);
                out.into_bytes()
            }
            Format::Xml => {
                let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
                element(root, self, &mut out);
                out.push('\n');
                out.into_bytes()
            }
        }
    }

    /// The document as an HTTP answer with its content type.
    pub fn respond(&self, status: StatusCode, format: Format, root: &str) -> Response {
        (
            status,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(format.content_type()),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            self.render(format, root),
        )
            .into_response()
    }
}

fn element(tag: &str, node: &Node, out: &mut String) {
    out.push('<');
    out.push_str(tag);
    if *node == Node::Null {
        out.push_str("/>");
        return;
    }
    out.push('>');
    node.xml(out);
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
}

fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry other C0 controls even escaped; they are dropped.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_renders_as_a_json_array_and_as_xml_items() {
        let doc = Node::List(
            "service",
            vec![Node::Object(vec![
                ("service_code", Node::text("sanitation.garbage")),
                ("metadata", Node::Bool(true)),
                ("keywords", Node::Null),
            ])],
        );
        assert_eq!(
            String::from_utf8(doc.render(Format::Json, "services")).unwrap(),
            r#"[{"service_code":"sanitation.garbage","metadata":true,"keywords":null}]"#
        );
        assert_eq!(
            String::from_utf8(doc.render(Format::Xml, "services")).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<services><service>\
             <service_code>sanitation.garbage</service_code><metadata>true</metadata>\
             <keywords/></service></services>\n"
        );
    }

    #[test]
    fn xml_text_is_escaped_and_controls_dropped() {
        let doc = Node::Object(vec![("d", Node::text("a<b & \"c\"\u{1}"))]);
        assert!(String::from_utf8(doc.render(Format::Xml, "r"))
            .unwrap()
            .contains("<d>a&lt;b &amp; &quot;c&quot;</d>"));
    }

    #[test]
    fn the_extension_names_the_format() {
        assert_eq!(
            Format::split("services.json"),
            Some(("services", Format::Json))
        );
        assert_eq!(Format::split("42.xml"), Some(("42", Format::Xml)));
        assert_eq!(Format::split("services"), None);
        assert_eq!(Format::split("services.csv"), None);
    }
}
