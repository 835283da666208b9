//! Auth, endpoints, filters, sensor readings, packages and pagination over real HTTP.

mod common;

use std::collections::HashSet;

use common::{Harness, TOKEN, config};
use serde_json::json;
use tanium_sim::{FleetSource, SSHD_MD5, SimConfig};

#[tokio::test]
async fn bad_or_missing_token_gets_401_with_a_non_json_body() {
    let h = Harness::start(config()).await;
    let body = r#"{"query":"{ now }"}"#;
    for token in ["token-wrong", ""] {
        let resp = h.raw(token, body).await;
        assert_eq!(resp.status(), 401);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/html"), "{ct}");
        let text = resp.text().await.unwrap();
        assert!(
            serde_json::from_str::<serde_json::Value>(&text).is_err(),
            "{text}"
        );
    }
    let resp = h.raw(TOKEN, body).await;
    assert_eq!(resp.status(), 200);
    // Only requests with a valid token are recorded, each distinct document once.
    let resp = h.raw(TOKEN, body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(h.server.sim().documents(), vec!["{ now }".to_string()]);
}

#[tokio::test]
async fn endpoints_default_page_fixtures_and_filters() {
    let h = Harness::start(config()).await;
    let d = h
        .data("{ endpoints { totalRecords pageInfo { hasNextPage endCursor } edges { node { id name computerID ipAddress os { name platform } } } } }", json!({}))
        .await;
    let e = &d["endpoints"];
    assert_eq!(e["totalRecords"], 100);
    assert_eq!(e["edges"].as_array().unwrap().len(), 20);
    assert_eq!(e["pageInfo"]["hasNextPage"], true);
    let ids: Vec<&str> = e["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["node"]["id"].as_str().unwrap())
        .collect();
    for fixture in ["12323", "54321", "21212", "274177"] {
        assert!(ids.contains(&fixture), "{fixture} missing from {ids:?}");
    }

    let by_name = h
        .endpoint_ids(
            json!({"sensor": {"name": "Computer Name"}, "op": "EQ", "value": "TESTMACHINE999"}),
        )
        .await;
    assert_eq!(by_name, vec!["274177"]);

    let linux = h
        .endpoint_ids(json!({"path": "os.platform", "value": "Linux"}))
        .await;
    let not_linux = h
        .endpoint_ids(json!({"path": "os.platform", "value": "Linux", "negated": true}))
        .await;
    assert!(linux.contains(&"54321".to_string()));
    assert_eq!(linux.len() + not_linux.len(), 100);
    let group = h
        .endpoint_ids(json!({"memberOf": {"name": "All Linux"}}))
        .await;
    assert_eq!(group, linux);

    let sshd = h
        .endpoint_ids(json!({"sensor": {"name": "Running Processes with MD5 Hash", "column": "MD5 Hash"}, "value": SSHD_MD5}))
        .await;
    assert!(
        sshd.contains(&"12323".to_string()) && sshd.len() > 2,
        "{sshd:?}"
    );

    let either = h
        .endpoint_ids(json!({"any": true, "filters": [
            {"path": "id", "value": "12323"},
            {"path": "name", "op": "MATCHES", "value": "^testmachine\\d+$"}
        ]}))
        .await;
    assert_eq!(either, vec!["12323", "274177"]);

    let msg = h
        .error(
            "query($f: EndpointFieldFilter) { endpoints(filter: $f) { totalRecords } }",
            json!({"f": {"path": "name", "op": "MATCHES", "value": "(unclosed"}}),
        )
        .await;
    assert!(msg.contains("regular expression"), "{msg}");
    let msg = h
        .error(
            "query($f: EndpointFieldFilter) { endpoints(filter: $f) { totalRecords } }",
            json!({"f": {"sensor": {"name": "No Such Sensor"}, "value": "x"}}),
        )
        .await;
    assert!(msg.contains("No Such Sensor"), "{msg}");
}

#[tokio::test]
async fn sensor_readings_honour_the_value_filter() {
    let h = Harness::start(config()).await;
    let d = h
        .data(
            r#"query($s: [EndpointSensorRef!]!) { endpoints(filter: {path: "id", value: "12323"}) {
                edges { node { sensorReadings(sensors: $s) { columns { name values sensor { name } } } } } } }"#,
            json!({"s": [
                {"name": "Running Processes with MD5 Hash", "filter": {"column": "MD5 Hash", "op": "EQ", "value": SSHD_MD5}},
                {"name": "Computer Name"},
                {"name": "Custom Tags"}
            ]}),
        )
        .await;
    let cols = d["endpoints"]["edges"][0]["node"]["sensorReadings"]["columns"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(cols.len(), 4, "{cols:?}");
    assert_eq!(cols[0]["name"], "Name");
    assert_eq!(cols[0]["values"], json!(["sshd.exe"]));
    assert_eq!(cols[1]["name"], "MD5 Hash");
    assert_eq!(cols[1]["values"], json!([SSHD_MD5]));
    assert_eq!(cols[1]["sensor"]["name"], "Running Processes with MD5 Hash");
    assert_eq!(cols[2]["values"], json!(["tanium-server-01"]));
    assert_eq!(cols[3]["values"], json!([]));
}

#[tokio::test]
async fn package_specs_by_name() {
    let h = Harness::start(config()).await;
    let q = r#"query($n: String!) { packageSpecs(filter: {path: "name", value: $n, op: EQ}) {
        totalRecords edges { node { id name command expireSeconds commandTimeoutSeconds params { key label defaultValue } sensorSourcedParams { name } } } } }"#;
    let d = h.data(q, json!({"n": "Custom Tagging - Add Tags"})).await;
    let node = &d["packageSpecs"]["edges"][0]["node"];
    assert_eq!(d["packageSpecs"]["totalRecords"], 1);
    assert_eq!(
        node["params"],
        json!([{"key": "$1", "label": "Tags", "defaultValue": null}])
    );
    assert_eq!(node["expireSeconds"], 600);
    let d = h
        .data(
            q,
            json!({"n": "Kill Process - ||Running Processes with MD5 Hash_MD5 Hash||"}),
        )
        .await;
    let node = &d["packageSpecs"]["edges"][0]["node"];
    assert_eq!(node["params"], json!([]));
    assert_eq!(
        node["sensorSourcedParams"],
        json!([{"name": "Running Processes with MD5 Hash_MD5 Hash"}])
    );
    let d = h.data(q, json!({"n": "No such package"})).await;
    assert_eq!(d["packageSpecs"]["totalRecords"], 0);
    let d = h.data("{ packageSpecs { totalRecords } actionGroups { totalRecords edges { node { name } } } }", json!({})).await;
    assert_eq!(d["packageSpecs"]["totalRecords"], 5);
    assert_eq!(
        d["actionGroups"]["edges"][0]["node"]["name"],
        "All Computers"
    );
}

const PAGE: &str = "query($first: Int, $after: Cursor) { endpoints(first: $first, after: $after) {
    totalRecords pageInfo { hasNextPage endCursor } edges { cursor node { id } } } }";

#[tokio::test]
async fn paging_1000_endpoints_returns_each_id_once_and_stale_cursors_expire() {
    let h = Harness::start(SimConfig {
        fleet: FleetSource::Generated {
            size: 1000,
            seed: 7,
        },
        ..config()
    })
    .await;
    assert_eq!(h.server.sim().endpoint_count(), 1000);
    let mut seen = HashSet::new();
    let mut after = serde_json::Value::Null;
    let mut pages = 0;
    let mut second_cursor = None;
    loop {
        let d = h.data(PAGE, json!({"first": 93, "after": after})).await;
        let e = &d["endpoints"];
        assert_eq!(e["totalRecords"], 1000);
        for edge in e["edges"].as_array().unwrap() {
            assert!(
                seen.insert(edge["node"]["id"].as_str().unwrap().to_string()),
                "duplicate {edge}"
            );
        }
        pages += 1;
        if pages == 2 {
            second_cursor = Some(e["pageInfo"]["endCursor"].clone());
        }
        if e["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = e["pageInfo"]["endCursor"].clone();
        // Each use keeps the walk alive, even when the whole walk takes longer than five minutes.
        h.advance(60);
    }
    assert_eq!(seen.len(), 1000);
    assert_eq!(pages, 11);

    h.advance(301);
    let msg = h
        .error(PAGE, json!({"first": 10, "after": second_cursor.unwrap()}))
        .await;
    assert!(msg.contains("cursor") && msg.contains("expired"), "{msg}");
    let msg = h
        .error(PAGE, json!({"first": 10, "after": "garbage"}))
        .await;
    assert!(msg.contains("cursor"), "{msg}");
}
