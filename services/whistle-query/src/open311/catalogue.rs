//! What the door offers: `discovery`, `services` (the approved policy's categories, each a
//! service whose code is the category code) and `services/{code}` (its attributes).

use axum::http::{header, HeaderMap};
use whistle_domain::policy::Policy;
use whistle_store::tokens::Role;

use super::{
    door::{Answer, Failure, BASE},
    format::Node,
};

pub(crate) const SPECIFICATION: &str = "http://wiki.open311.org/GeoReport_v2";
/// When this door's behaviour last changed; discovery says it so clients can notice.
const CHANGESET: &str = "2026-12-08T00:00:00Z";

/// The urgency attribute's values: the key a client sends and its name.
pub(crate) const URGENCIES: [(&str, &str); 3] = [
    ("normal", "一般"),
    ("urgent", "较急"),
    ("emergency", "紧急"),
];
/// The 12345 work order's number (工单编号), required of hotline keys.
pub(crate) const ORDER_NO: &str = "order_no";
/// When the hotline took the call (受理时间), ISO 8601.
pub(crate) const RECEIVED_AT: &str = "received_at";
pub(crate) const URGENCY: &str = "urgency";

/// The discovery document: this one endpoint, in both formats.
pub(crate) fn discovery(scheme: &str, headers: &HeaderMap) -> (Node, &'static str) {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let endpoint = Node::Object(vec![
        ("specification", Node::text(SPECIFICATION)),
        ("url", Node::text(format!("{scheme}://{host}{BASE}"))),
        ("changeset", Node::text(CHANGESET)),
        ("type", Node::text("production")),
        (
            "formats",
            Node::List(
                "format",
                vec![Node::text("text/xml"), Node::text("application/json")],
            ),
        ),
    ]);
    (
        Node::Object(vec![
            ("changeset", Node::text(CHANGESET)),
            (
                "contact",
                Node::text("the city's command centre (指挥中心), which runs this service"),
            ),
            (
                "key_service",
                Node::text("keys are issued by the command centre: whistle token create --role open311 --area <code>"),
            ),
            ("endpoints", Node::List("endpoint", vec![endpoint])),
        ]),
        "discovery",
    )
}

/// Every category of the policy as a service.
pub(crate) fn services(policy: &Policy) -> (Node, &'static str) {
    let services = policy
        .categories()
        .map(|category| {
            let group = policy.group(&category.group);
            let group_name = group.map_or(category.group.as_str(), |g| g.name_zh.as_str());
            let mut keywords = vec![category.name_en.as_str()];
            if let Some(group) = group {
                keywords.push(group.name_en.as_str());
            }
            Node::Object(vec![
                ("service_code", Node::text(category.code.to_string())),
                ("service_name", Node::text(category.name_zh.clone())),
                (
                    "description",
                    Node::text(format!("{} ({})", category.name_zh, category.name_en)),
                ),
                ("metadata", Node::Bool(true)),
                ("type", Node::text("realtime")),
                ("keywords", Node::text(keywords.join(", "))),
                ("group", Node::text(group_name)),
            ])
        })
        .collect();
    (Node::List("service", services), "services")
}

/// One service's attributes; a hotline key also sees the work order's.
pub(crate) fn definition(policy: &Policy, code: &str, role: Role) -> Answer {
    let category = policy
        .category(code)
        .ok_or_else(|| Failure::not_found(format!("no service {code:?} (see services.json)")))?;
    let values = |pairs: &[(&str, &str)]| {
        Node::List(
            "value",
            pairs
                .iter()
                .map(|(key, name)| {
                    Node::Object(vec![("key", Node::text(*key)), ("name", Node::text(*name))])
                })
                .collect(),
        )
    };
    let attribute = |code: &'static str,
                     datatype: &'static str,
                     required: bool,
                     order: i64,
                     description: &'static str,
                     list: Node| {
        Node::Object(vec![
            ("variable", Node::Bool(true)),
            ("code", Node::text(code)),
            ("datatype", Node::text(datatype)),
            ("required", Node::Bool(required)),
            ("datatype_description", Node::Null),
            ("order", Node::Integer(order)),
            ("description", Node::text(description)),
            ("values", list),
        ])
    };
    let mut attributes = vec![attribute(
        URGENCY,
        "singlevaluelist",
        false,
        1,
        "紧急程度 (how urgent); normal unless said",
        values(&URGENCIES),
    )];
    if role == Role::Hotline {
        attributes.push(attribute(
            ORDER_NO,
            "string",
            true,
            2,
            "12345 工单编号 (the work order's number; a work order sent again is filed once)",
            Node::List("value", Vec::new()),
        ));
        attributes.push(attribute(
            RECEIVED_AT,
            "datetime",
            false,
            3,
            "受理时间 (when the hotline took the call, ISO 8601)",
            Node::List("value", Vec::new()),
        ));
    }
    Ok((
        Node::Object(vec![
            ("service_code", Node::text(category.code.to_string())),
            ("attributes", Node::List("attribute", attributes)),
        ]),
        "service_definition",
    ))
}
