//! The Open311 GeoReport v2 door (docs/open311.md), driven as an independent client drives it:
//! plain HTTP (reqwest), every resource in JSON and XML, the documents checked against the
//! shapes of the spec's examples (wiki.open311.org/GeoReport_v2, FixMyStreet's
//! servicerequestupdates), every error the spec names in both formats.

use prost::Message as _;
use reqwest::StatusCode;
use serde_json::Value;
use whistle_domain::Level;
use whistle_proto::v1;
use whistle_store::tokens::Role;

use crate::harness::*;

/// A client of the door with one key.
struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    fn new(stack: &Stack, key: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: format!("http://{}/open311/v2", stack.query_addr()),
            key: key.to_owned(),
        }
    }

    async fn get(&self, path: &str, params: &[(&str, &str)]) -> (StatusCode, String, String) {
        let mut query: Vec<(&str, &str)> = vec![("api_key", &self.key)];
        query.extend_from_slice(params);
        let response = self
            .http
            .get(format!("{}/{path}", self.base))
            .query(&query)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, response.text().await.unwrap())
    }

    async fn json(&self, path: &str, params: &[(&str, &str)]) -> (StatusCode, Value) {
        let (status, content_type, body) = self.get(&format!("{path}.json"), params).await;
        assert!(
            content_type.starts_with("application/json"),
            "{path}: {content_type}"
        );
        (
            status,
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")),
        )
    }

    async fn xml(&self, path: &str, params: &[(&str, &str)]) -> (StatusCode, String) {
        let (status, content_type, body) = self.get(&format!("{path}.xml"), params).await;
        assert!(
            content_type.starts_with("text/xml"),
            "{path}: {content_type}"
        );
        assert!(
            body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            "{path}: {body}"
        );
        (status, body)
    }

    async fn post(&self, format: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let mut fields: Vec<(&str, &str)> = vec![("api_key", &self.key)];
        fields.extend_from_slice(form);
        let response = self
            .http
            .post(format!("{}/requests.{format}", self.base))
            .form(&fields)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// Files a request in JSON and returns its id, asking for the token's id while intake decides.
    async fn file(&self, form: &[(&str, &str)]) -> String {
        let (status, body) = self.post("json", form).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        let request = &answer.as_array().expect("a list of one request")[0];
        if let Some(id) = request["service_request_id"].as_str() {
            return id.to_owned();
        }
        let token = request["token"]
            .as_str()
            .expect("an id or a token")
            .to_owned();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, found) = self.json(&format!("tokens/{token}"), &[]).await;
            if status == StatusCode::OK {
                return found[0]["service_request_id"].as_str().unwrap().to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "token {token}: {found}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// The XML document's root and the texts of the named children of its items (`<root><item>…`).
fn xml_items(
    body: &str,
    root: &str,
    item: &str,
) -> Vec<std::collections::BTreeMap<String, String>> {
    let doc = roxmltree::Document::parse(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(doc.root_element().tag_name().name(), root, "{body}");
    doc.root_element()
        .children()
        .filter(|n| n.is_element())
        .map(|n| {
            assert_eq!(n.tag_name().name(), item, "{body}");
            n.children()
                .filter(|c| c.is_element())
                .map(|c| {
                    (
                        c.tag_name().name().to_owned(),
                        c.text().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .collect()
}

/// The spec's error document, in both formats: a list of `{code, description}`.
async fn expect_error(client: &Client, path: &str, params: &[(&str, &str)], code: StatusCode) {
    let (status, json) = client.json(path, params).await;
    assert_eq!(status, code, "{path}: {json}");
    assert_eq!(json[0]["code"], code.as_u16(), "{json}");
    assert!(
        !json[0]["description"].as_str().unwrap().is_empty(),
        "{json}"
    );
    let (status, xml) = client.xml(path, params).await;
    assert_eq!(status, code, "{path}: {xml}");
    let errors = xml_items(&xml, "errors", "error");
    assert_eq!(errors[0]["code"], code.as_u16().to_string(), "{xml}");
    assert!(!errors[0]["description"].is_empty(), "{xml}");
}

/// A grid of the district and its centre, and a point about 300 m north of it.
async fn grid_in(stack: &Stack, district: &str) -> (String, f64, f64) {
    let (code, lat, lon): (String, f64, f64) = sqlx::query_as(
        "SELECT code, lat, lon FROM org_units WHERE level = 'grid' AND code LIKE $1 || '%'
         ORDER BY code LIMIT 1",
    )
    .bind(district)
    .fetch_one(stack.pool())
    .await
    .unwrap();
    (code, lat, lon)
}

/// The grid nearest a point, as the door must find it.
async fn nearest(stack: &Stack, lat: f64, lon: f64) -> String {
    sqlx::query_scalar(
        "SELECT code FROM org_units WHERE level = 'grid'
         ORDER BY (lat - $1) ^ 2 + ((lon - $2) * cos(radians($1))) ^ 2 LIMIT 1",
    )
    .bind(lat)
    .bind(lon)
    .fetch_one(stack.pool())
    .await
    .unwrap()
}

async fn stored_report(stack: &Stack, id: &str) -> (String, String, v1::Report) {
    let (grid, reporter, payload): (String, String, Vec<u8>) =
        sqlx::query_as("SELECT grid_code, reporter_id, payload FROM reports WHERE report_id = $1")
            .bind(id)
            .fetch_one(stack.pool())
            .await
            .unwrap();
    (
        grid,
        reporter,
        v1::Report::decode(payload.as_slice()).unwrap(),
    )
}

#[tokio::test]
async fn an_open311_client_files_and_follows_requests_in_json_and_xml() {
    let stack = Stack::command_center().await;
    let (district, _, other_district, other_grid) = places();
    let key = stack.token_for(Role::Open311, &district).await;
    let client = Client::new(&stack, &key);
    let (grid_centre, lat0, lon0) = grid_in(&stack, &district).await;
    let lat = lat0 + 0.0005;
    let (lat_s, lon_s) = (lat.to_string(), lon0.to_string());
    let grid = nearest(&stack, lat, lon0).await;
    assert!(grid.starts_with(&district), "{grid} near {grid_centre}");

    // Discovery: this endpoint, both formats.
    let (status, discovery) = client.json("discovery", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let endpoint = &discovery["endpoints"][0];
    assert_eq!(
        endpoint["specification"],
        "http://wiki.open311.org/GeoReport_v2"
    );
    assert!(endpoint["url"].as_str().unwrap().ends_with("/open311/v2"));
    assert_eq!(
        endpoint["formats"],
        serde_json::json!(["text/xml", "application/json"])
    );
    assert!(discovery["changeset"].is_string() && discovery["key_service"].is_string());
    let (_, xml) = client.xml("discovery", &[]).await;
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert_eq!(doc.root_element().tag_name().name(), "discovery");
    let formats: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("format"))
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(formats, ["text/xml", "application/json"]);

    // Services: the policy's categories, the same in both formats.
    let policy = whistle_wire::policy::load("ordos").unwrap();
    let categories = policy.categories().count();
    let (status, services) = client.json("services", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let services = services.as_array().unwrap();
    assert_eq!(services.len(), categories);
    let heating = services
        .iter()
        .find(|s| s["service_code"] == "heating.no_heat")
        .expect("heating.no_heat is a service");
    for field in ["service_name", "description", "type", "keywords", "group"] {
        assert!(heating[field].is_string(), "{field}: {heating}");
    }
    assert_eq!(heating["metadata"], true);
    assert_eq!(heating["type"], "realtime");
    let (_, xml) = client.xml("services", &[]).await;
    let items = xml_items(&xml, "services", "service");
    assert_eq!(items.len(), categories);
    assert!(items.iter().any(|s| s["service_code"] == "heating.no_heat"
        && s["service_name"] == heating["service_name"].as_str().unwrap()
        && s["metadata"] == "true"));

    // A service definition: its attributes; an unknown service is 404.
    let (status, definition) = client.json("services/heating.no_heat", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(definition["service_code"], "heating.no_heat");
    let urgency = &definition["attributes"][0];
    assert_eq!(urgency["code"], "urgency");
    assert_eq!(urgency["datatype"], "singlevaluelist");
    assert_eq!(urgency["variable"], true);
    assert_eq!(urgency["values"].as_array().unwrap().len(), 3);
    assert_eq!(urgency["values"][2]["key"], "emergency");
    assert_eq!(
        definition["attributes"].as_array().unwrap().len(),
        1,
        "an open311 key sees no hotline attributes"
    );
    let (_, xml) = client.xml("services/heating.no_heat", &[]).await;
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert_eq!(doc.root_element().tag_name().name(), "service_definition");
    let keys: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("value"))
        .filter_map(|v| {
            v.children()
                .find(|c| c.has_tag_name("key"))
                .and_then(|k| k.text())
        })
        .collect();
    assert_eq!(keys, ["normal", "urgent", "emergency"]);
    expect_error(&client, "services/no.such", &[], StatusCode::NOT_FOUND).await;

    // POST requests: filed as a report of the nearest grid, in its worker's name, tagged open311.
    let description = "3号楼暖气不热，联系王女士13812348000，身份证150602199001011234";
    let first = client
        .file(&[
            ("service_code", "heating.no_heat"),
            ("lat", &lat_s),
            ("long", &lon_s),
            ("address_string", "康和小区3号楼"),
            ("description", description),
            ("phone", "13812348000"),
            ("email", "wang@example.com"),
            ("first_name", "王"),
            ("attribute[urgency]", "urgent"),
            ("media_url", "https://example.com/photo.jpg"),
        ])
        .await;
    assert!(first.starts_with("o311-"), "{first}");
    let (stored_grid, reporter, report) = stored_report(&stack, &first).await;
    assert_eq!(stored_grid, grid);
    assert_eq!(reporter, format!("gw-{grid}"));
    assert_eq!(report.channel, v1::Channel::Open311 as i32);
    assert!(!report.channel_ref.is_empty());
    assert_eq!(report.urgency, v1::Urgency::Urgent as i32);
    assert_eq!(
        report.contact_phone, "",
        "the contact is sealed apart, never stored in the report"
    );
    assert_eq!(
        stack
            .count(&format!(
                "SELECT count(*) FROM report_contacts WHERE report_id = '{first}'"
            ))
            .await,
        1
    );
    // The same in XML.
    let (status, xml) = client
        .post(
            "xml",
            &[
                ("service_code", "sanitation.garbage"),
                ("lat", &lat_s),
                ("long", &lon_s),
                ("description", "垃圾两天没清运"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    let answer = xml_items(&xml, "service_requests", "request");
    let second = answer[0]
        .get("service_request_id")
        .or(answer[0].get("token"))
        .expect("an id or a token")
        .clone();
    let second = {
        // Once recorded, the token is the id.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, found) = client.json(&format!("tokens/{second}"), &[]).await;
            if status == StatusCode::OK {
                assert_eq!(found[0]["token"], second.as_str());
                break found[0]["service_request_id"].as_str().unwrap().to_owned();
            }
            assert!(tokio::time::Instant::now() < deadline, "{found}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let (_, xml) = client.xml(&format!("tokens/{second}"), &[]).await;
    assert_eq!(
        xml_items(&xml, "service_requests", "request")[0]["service_request_id"],
        second
    );

    // GET requests/{id}: open, its real deadline, redacted, the handling unit responsible.
    let incident = stack.incident_of(&first).await;
    let due: chrono::DateTime<chrono::Utc> = stack.incident_column(incident, "due_at").await;
    let (status, one) = client.json(&format!("requests/{first}"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let request = &one[0];
    assert_eq!(request["service_request_id"], first.as_str());
    assert_eq!(request["status"], "open");
    assert_eq!(request["service_code"], "heating.no_heat");
    assert_eq!(
        request["expected_datetime"],
        due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let shown = request["description"].as_str().unwrap();
    assert!(
        !shown.contains("13812348000") && !shown.contains("199001011234"),
        "{shown}"
    );
    assert!(
        shown.contains("138****8000") && shown.contains("3号楼暖气不热"),
        "{shown}"
    );
    assert!(!one.to_string().contains("wang@example.com"));
    assert!(request["agency_responsible"].is_string(), "{request}");
    assert!((request["lat"].as_f64().unwrap() - lat).abs() < 1e-9);
    assert_eq!(request["media_url"], "https://example.com/photo.jpg");
    for field in [
        "requested_datetime",
        "updated_datetime",
        "service_name",
        "status_notes",
    ] {
        assert!(request[field].is_string(), "{field}: {request}");
    }
    assert!(request.get("extended_attributes").is_none());
    let (_, extended) = client
        .json(&format!("requests/{first}"), &[("extensions", "true")])
        .await;
    let extended = &extended[0]["extended_attributes"];
    assert_eq!(extended["detailed_status"], "handling");
    assert_eq!(extended["channel"], "open311");
    let (_, xml) = client.xml(&format!("requests/{first}"), &[]).await;
    let items = xml_items(&xml, "service_requests", "request");
    assert_eq!(items[0]["service_request_id"], first);
    assert_eq!(items[0]["status"], "open");
    assert!(items[0]["description"].contains("138****8000"));

    // GET requests: the spec's filters and the paging extension.
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["service_request_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, all) = client.json("requests", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let mut both = ids(&all);
    both.sort();
    let mut expected = vec![first.clone(), second.clone()];
    expected.sort();
    assert_eq!(both, expected);
    let list = format!("{first},{second}");
    assert_eq!(
        ids(&client
            .json("requests", &[("service_request_id", &list)])
            .await
            .1)
        .len(),
        2
    );
    assert_eq!(
        ids(&client
            .json("requests", &[("service_code", "heating.no_heat")])
            .await
            .1),
        [first.as_str()]
    );
    assert_eq!(
        ids(&client.json("requests", &[("status", "open")]).await.1).len(),
        2
    );
    assert!(ids(&client.json("requests", &[("status", "closed")]).await.1).is_empty());
    let now = stack.now();
    let iso =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (before_start, before_end) = (
        iso(now - chrono::TimeDelta::days(10)),
        iso(now - chrono::TimeDelta::days(1)),
    );
    assert!(ids(&client
        .json(
            "requests",
            &[("start_date", &before_start), ("end_date", &before_end)]
        )
        .await
        .1)
    .is_empty());
    // Split by channel: the door's extension, and the column statistics group by.
    assert_eq!(
        ids(&client.json("requests", &[("channel", "open311")]).await.1).len(),
        2
    );
    assert!(ids(&client
        .json("requests", &[("channel", "hotline_12345")])
        .await
        .1)
    .is_empty());
    let by_channel: Vec<(String, i64)> =
        sqlx::query_as("SELECT channel, count(*) FROM reports GROUP BY channel")
            .fetch_all(stack.pool())
            .await
            .unwrap();
    assert_eq!(by_channel, [("open311".to_owned(), 2)]);
    let page1 = ids(&client.json("requests", &[("page_size", "1")]).await.1);
    let page2 = ids(&client
        .json("requests", &[("page_size", "1"), ("page", "2")])
        .await
        .1);
    assert_eq!(page1.len(), 1);
    assert_eq!(page2.len(), 1);
    assert_ne!(page1, page2);
    let (_, xml) = client.xml("requests", &[]).await;
    assert_eq!(xml_items(&xml, "service_requests", "request").len(), 2);

    // Errors as the spec says, in both formats.
    let far = iso(now - chrono::TimeDelta::days(200));
    expect_error(
        &client,
        "requests",
        &[("status", "pending")],
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect_error(
        &client,
        "requests",
        &[("start_date", "yesterday")],
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect_error(
        &client,
        "requests",
        &[("start_date", &far), ("end_date", &iso(now))],
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect_error(
        &client,
        "requests",
        &[("page_size", "0")],
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect_error(&client, "requests/o311-nosuch", &[], StatusCode::NOT_FOUND).await;
    expect_error(&client, "tokens/o311-nosuch", &[], StatusCode::NOT_FOUND).await;
    expect_error(&client, "nosuch", &[], StatusCode::NOT_FOUND).await;
    for bad_key in ["", "wst_not-a-key", stack.token()] {
        let keyless = Client::new(&stack, bad_key);
        expect_error(&keyless, "services", &[], StatusCode::FORBIDDEN).await;
        expect_error(&keyless, "requests", &[], StatusCode::FORBIDDEN).await;
        let (status, body) = keyless
            .post("xml", &[("service_code", "heating.no_heat")])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(xml_items(&body, "errors", "error")[0]["code"], "403");
    }
    let post_error = |form: Vec<(&'static str, String)>, code: StatusCode| {
        let client = &client;
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            for format in ["json", "xml"] {
                let (status, body) = client.post(format, &form).await;
                assert_eq!(status, code, "{form:?}: {body}");
                let code_text = if format == "json" {
                    serde_json::from_str::<Value>(&body).unwrap()[0]["code"].to_string()
                } else {
                    xml_items(&body, "errors", "error")[0]["code"].clone()
                };
                assert_eq!(code_text, code.as_u16().to_string(), "{body}");
            }
        }
    };
    let at = |code: &str| {
        vec![
            ("service_code", code.to_owned()),
            ("lat", lat_s.clone()),
            ("long", lon_s.clone()),
        ]
    };
    post_error(
        vec![("lat", lat_s.clone()), ("long", lon_s.clone())],
        StatusCode::BAD_REQUEST,
    )
    .await;
    post_error(at("no.such"), StatusCode::BAD_REQUEST).await;
    post_error(
        vec![("service_code", "heating.no_heat".into())],
        StatusCode::BAD_REQUEST,
    )
    .await;
    post_error(
        vec![
            ("service_code", "heating.no_heat".into()),
            ("lat", "0".into()),
            ("long", "0".into()),
        ],
        StatusCode::BAD_REQUEST,
    )
    .await;
    post_error(
        vec![
            ("service_code", "heating.no_heat".into()),
            ("lat", "91".into()),
            ("long", "0".into()),
        ],
        StatusCode::BAD_REQUEST,
    )
    .await;
    let mut bad_urgency = at("heating.no_heat");
    bad_urgency.push(("attribute[urgency]", "whenever".into()));
    post_error(bad_urgency, StatusCode::BAD_REQUEST).await;
    let mut foreign = at("heating.no_heat");
    foreign.push(("attribute[order_no]", "GD1".into()));
    post_error(foreign, StatusCode::BAD_REQUEST).await;
    // A point in another district's grid is outside this key's area.
    let (elsewhere_lat, elsewhere_lon): (f64, f64) =
        sqlx::query_as("SELECT lat, lon FROM org_units WHERE code = $1")
            .bind(&other_grid)
            .fetch_one(stack.pool())
            .await
            .unwrap();
    post_error(
        vec![
            ("service_code", "heating.no_heat".into()),
            ("lat", elsewhere_lat.to_string()),
            ("long", elsewhere_lon.to_string()),
        ],
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(
        stack.count("SELECT count(*) FROM reports").await,
        2,
        "nothing refused was filed"
    );

    // Another district's key sees none of these; the key opens no other door.
    let other = Client::new(
        &stack,
        &stack.token_for(Role::Open311, &other_district).await,
    );
    assert!(other
        .json("requests", &[])
        .await
        .1
        .as_array()
        .unwrap()
        .is_empty());
    expect_error(
        &other,
        &format!("requests/{first}"),
        &[],
        StatusCode::NOT_FOUND,
    )
    .await;
    let refused = command_center_on(stack.channel(), &key)
        .get_overview(v1::GetOverviewRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    assert!(
        Person::connect_with(stack.server(), &key, "_INBOX_x")
            .await
            .is_err(),
        "an Open311 key has no NATS identity"
    );

    // Resolved and followed up: closed, and FixMyStreet's updates tell the steps.
    let community = unit(&grid, Level::Community);
    stack.advance(chrono::TimeDelta::minutes(10));
    stack
        .ok(&format!("hd-{community}"), incident, resolve())
        .await;
    stack.advance(chrono::TimeDelta::minutes(10));
    stack.ok(&format!("gw-{grid}"), incident, satisfied()).await;
    let (_, closed) = client
        .json(&format!("requests/{first}"), &[("extensions", "true")])
        .await;
    assert_eq!(closed[0]["status"], "closed");
    assert_eq!(
        closed[0]["extended_attributes"]["detailed_status"],
        "closed"
    );
    assert_eq!(
        ids(&client.json("requests", &[("status", "closed")]).await.1),
        [first.as_str()]
    );
    let (status, updates) = client.json("servicerequestupdates", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let of_first: Vec<&Value> = updates
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["service_request_id"] == first.as_str())
        .collect();
    let statuses: Vec<&str> = of_first
        .iter()
        .map(|u| u["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.first(), Some(&"FIXED"), "{updates}");
    assert_eq!(statuses.last(), Some(&"CLOSED"), "{updates}");
    for update in &of_first {
        for field in ["update_id", "updated_datetime", "description"] {
            assert!(update[field].is_string(), "{field}: {update}");
        }
    }
    let (_, xml) = client.xml("servicerequestupdates", &[]).await;
    let items = xml_items(&xml, "service_request_updates", "request_update");
    assert_eq!(items.len(), updates.as_array().unwrap().len());
}

#[tokio::test]
async fn the_12345_hotline_files_work_orders_once_each_tagged_with_their_channel() {
    let stack = Stack::command_center().await;
    let (district, _, _, _) = places();
    let hotline = Client::new(&stack, &stack.token_for(Role::Hotline, &district).await);
    let (_, lat, lon) = grid_in(&stack, &district).await;
    let (lat, lon) = (lat.to_string(), lon.to_string());

    let (_, definition) = hotline.json("services/heating.no_heat", &[]).await;
    let codes: Vec<&str> = definition["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["urgency", "order_no", "received_at"]);
    assert_eq!(definition["attributes"][1]["required"], true);

    let received = (stack.now() - chrono::TimeDelta::minutes(20)).to_rfc3339();
    let order = [
        ("service_code", "heating.no_heat"),
        ("lat", lat.as_str()),
        ("long", lon.as_str()),
        ("description", "市民来电：家中暖气不热"),
        ("phone", "13912345678"),
        ("attribute[order_no]", "GD20261208-0001"),
        ("attribute[received_at]", received.as_str()),
    ];
    let id = hotline.file(&order).await;
    assert_eq!(id, "12345-GD20261208-0001");
    // Sent again (the hotline's retry): the same request, filed once.
    assert_eq!(hotline.file(&order).await, id);
    assert_eq!(stack.count("SELECT count(*) FROM reports").await, 1);
    let (_, _, report) = stored_report(&stack, &id).await;
    assert_eq!(report.channel, v1::Channel::Hotline12345 as i32);
    assert_eq!(report.channel_ref, "GD20261208-0001");
    assert_eq!(
        stack
            .count("SELECT count(*) FROM reports WHERE channel = 'hotline_12345'")
            .await,
        1
    );
    assert!(report.occurred_at.is_some());
    let (_, shown) = hotline
        .json(&format!("requests/{id}"), &[("extensions", "true")])
        .await;
    assert_eq!(shown[0]["extended_attributes"]["channel"], "hotline_12345");

    // A work order without its number, or with one that cannot be an id, is refused.
    let (status, body) = hotline.post("json", &order[..5]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("order_no"), "{body}");
    let mut bad = order.to_vec();
    bad[5] = ("attribute[order_no]", "GD 1/2");
    let (status, body) = hotline.post("xml", &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(stack.count("SELECT count(*) FROM reports").await, 1);

    // A grid worker may not claim another channel through SubmitReport.
    let worker = stack
        .token_for(
            Role::GridWorker,
            &nearest(&stack, lat.parse().unwrap(), lon.parse().unwrap()).await,
        )
        .await;
    let mut claimed = report.clone();
    claimed.report_id = "gw-claims-12345".into();
    claimed.reporter_id = String::new();
    claimed.channel_ref = String::new();
    let refused = reporting(&stack, &worker)
        .await
        .submit_report(v1::SubmitReportRequest {
            report: Some(claimed.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");

    // Nor straight over NATS: on its own grid's subject intake rejects the claim, and the
    // hotline's subject below it is the query service's alone.
    let grid: whistle_domain::AreaCode = claimed.grid_code.parse().unwrap();
    let mut person = stack.connect_as(&worker).await;
    claimed.report_id = "gw-claims-12345-nats".into();
    claimed.reporter_id = format!("gw-{grid}");
    let publish = |subject: String| {
        let client = person.client.clone();
        let payload = claimed.encode_to_vec();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, "gw-claims-12345-nats");
            client
                .publish_with_headers(subject, headers, payload.into())
                .await
                .unwrap();
            client.flush().await.unwrap();
        }
    };
    publish(whistle_wire::subject::report(&grid)).await;
    eventually("the claim rejected", WAIT, || async {
        stack
            .count(
                "SELECT count(*) FROM rejected_reports
                 WHERE report_id = 'gw-claims-12345-nats' AND reason = 'channel_mismatch'",
            )
            .await
            == 1
    })
    .await
    .unwrap();
    let hotline_subject = whistle_wire::subject::channel_report(&grid, v1::Channel::Hotline12345);
    publish(hotline_subject.clone()).await;
    person.expect_violation(&hotline_subject).await;
    assert_eq!(stack.count("SELECT count(*) FROM reports").await, 1);

    // The month's statistics by channel: the hotline's one incident on its own row.
    let board = stack
        .client()
        .get_scoreboard(v1::GetScoreboardRequest {
            area_code: district.clone(),
            month: String::new(),
            kind: v1::ScoreboardKind::Channels as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let samples: Vec<(&str, u64)> = board
        .rows
        .iter()
        .map(|r| (r.code.as_str(), r.sample))
        .collect();
    assert_eq!(
        samples,
        [
            ("hotline_12345", 1),
            ("device", 0),
            ("grid_worker", 0),
            ("open311", 0),
            ("proactive", 0)
        ],
        "{board:?}"
    );
}

#[tokio::test]
async fn a_published_open311_client_reads_the_door_in_json_and_xml() {
    // PyPI's georeport, installed by deploy/local/test.sh into this directory.
    let dir = std::env::var("WHISTLE_GEOREPORT_DIR").expect(
        "WHISTLE_GEOREPORT_DIR is unset: run deploy/local/test.sh, which installs PyPI's georeport",
    );
    let stack = Stack::command_center().await;
    let (district, _, _, _) = places();
    let key = stack.token_for(Role::Open311, &district).await;
    let client = Client::new(&stack, &key);
    let (_, lat, lon) = grid_in(&stack, &district).await;
    let (lat, lon) = (lat.to_string(), lon.to_string());
    let id = client
        .file(&[
            ("service_code", "heating.no_heat"),
            ("lat", &lat),
            ("long", &lon),
            ("description", "暖气不热"),
        ])
        .await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/open311_client.py");
    let (base, asked) = (client.base.clone(), id.clone());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .args([&base, &key, &asked])
            .env("PYTHONPATH", dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    let categories = whistle_wire::policy::load("ordos")
        .unwrap()
        .categories()
        .count();
    for format in ["json", "xml"] {
        let seen = &seen[format];
        assert_eq!(
            seen["services"].as_array().unwrap().len(),
            categories,
            "{format}: {seen}"
        );
        assert_eq!(seen["definition"], "heating.no_heat", "{format}");
        assert_eq!(
            seen["attributes"],
            serde_json::json!(["urgency"]),
            "{format}"
        );
        assert_eq!(seen["found"], serde_json::json!([id]), "{format}");
        assert_eq!(seen["status"], "open", "{format}");
        assert_eq!(seen["service_code"], "heating.no_heat", "{format}");
        assert_eq!(seen["missing"], 404, "{format}");
    }
}
