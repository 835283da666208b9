//! Where a preview reads from: the Tanium Data Service's collected readings or a live question, each played the
//! way a real server may answer.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, config};
use serde_json::{Value, json};
use tanium_sim::{SSHD_MD5, SourceModes};

const COUNT: &str = r#"query($filter: EndpointFieldFilter, $source: EndpointSource) {
  endpoints(first: 5, filter: $filter, source: $source) {
    totalRecords
    collectionInfo { active success expectedTotal respondedTotal }
    edges { node { id } }
  }
}"#;

const SENSORS: &str = r#"query($filter: FieldFilter) {
  sensors(filter: $filter) { totalRecords edges { node { name harvested maxAgeSeconds columns { name } } } }
}"#;

fn md5_filter() -> Value {
    json!({"filters": [
        {"sensor": {"name": "Running Processes with MD5 Hash", "column": "MD5 Hash"}, "op": "EQ", "value": SSHD_MD5},
        {"sensor": {"name": "OS Platform"}, "op": "EQ", "value": "Windows"}
    ]})
}

async fn count(h: &Harness, filter: Value, source: Value) -> (i64, Value) {
    let d = h
        .data(COUNT, json!({"filter": filter, "source": source}))
        .await;
    let c = &d["endpoints"];
    (
        c["totalRecords"].as_i64().unwrap_or(-1),
        c["collectionInfo"].clone(),
    )
}

fn live(max_wait: u32) -> Value {
    json!({"ts": {"maxWaitTime": max_wait}})
}

#[tokio::test]
async fn tds_holds_only_registered_sensors_when_told() {
    let h = Harness::start(config()).await;
    let (cached, _) = count(&h, md5_filter(), Value::Null).await;
    let (asked, info) = count(&h, md5_filter(), live(30)).await;
    assert!(
        asked > 0,
        "the fleet runs sshd on some online Windows endpoint"
    );
    assert_eq!(info["respondedTotal"], info["expectedTotal"], "{info}");
    assert!(
        cached >= asked,
        "the friendly default collects every sensor"
    );

    h.server.sim().set_sources(SourceModes {
        tds_registered_only: true,
        ..SourceModes::default()
    });
    let (cached, _) = count(&h, md5_filter(), Value::Null).await;
    assert_eq!(cached, 0, "TDS has no process readings to match");
    let (asked_again, _) = count(&h, md5_filter(), live(30)).await;
    assert_eq!(asked_again, asked, "a live question still finds them");
    let (windows, _) = count(
        &h,
        json!({"sensor": {"name": "OS Platform"}, "op": "EQ", "value": "Windows"}),
        Value::Null,
    )
    .await;
    assert!(windows > 0, "a registered sensor is still cached");

    let d = h.data(SENSORS, json!({"filter": {"path": "name", "op": "EQ", "value": "Running Processes with MD5 Hash"}})).await;
    let node = &d["sensors"]["edges"][0]["node"];
    assert_eq!(node["harvested"], false, "{d}");
    assert_eq!(node["columns"][1]["name"], "MD5 Hash", "{d}");
    let d = h.data(SENSORS, json!({"filter": null})).await;
    assert_eq!(d["sensors"]["totalRecords"], 5, "{d}");
}

#[tokio::test]
async fn cached_readings_lag_by_up_to_the_configured_age() {
    let h = Harness::start(config()).await;
    let sim = h.server.sim();
    sim.set_sources(SourceModes {
        tds_max_age_ms: 600_000,
        ..SourceModes::default()
    });
    let tagged = json!({"sensor": {"name": "Custom Tags"}, "op": "EQ", "value": "Fresh"});
    let (before, _) = count(&h, tagged.clone(), Value::Null).await;
    assert_eq!(before, 0);
    let ids = sim.online_endpoint_ids();
    for id in ids.iter().take(3) {
        assert!(sim.set_tags(id, vec!["Fresh".into()]));
    }
    let (cached, _) = count(&h, tagged.clone(), Value::Null).await;
    assert_eq!(cached, 0, "TDS still holds the readings it collected");
    let (asked, _) = count(&h, tagged.clone(), live(30)).await;
    assert_eq!(asked, 3, "a live question sees the tags now");
    let d = h
        .data(
            SENSORS,
            json!({"filter": {"path": "name", "op": "EQ", "value": "Custom Tags"}}),
        )
        .await;
    assert_eq!(
        d["sensors"]["edges"][0]["node"]["maxAgeSeconds"], 600,
        "{d}"
    );
    h.advance(601);
    let (caught_up, _) = count(&h, tagged, Value::Null).await;
    assert_eq!(caught_up, 3, "every reading is refreshed within the age");
}

#[tokio::test]
async fn a_live_question_is_answered_by_those_fast_enough() {
    let mut c = config();
    // Real time, so that the answer's wait is visible; a fast clock keeps it short.
    c.time_scale = 20.0;
    let h = Harness::start(c).await;
    h.server.sim().set_sources(SourceModes {
        live_answer_spread_ms: 60_000,
        ..SourceModes::default()
    });
    let online = h.server.sim().online_endpoint_ids().len() as i64;
    let started = Instant::now();
    let (some, info) = count(&h, Value::Null, live(20)).await;
    let waited = started.elapsed();
    assert_eq!(info["expectedTotal"], online, "{info}");
    let responded = info["respondedTotal"].as_i64().unwrap_or(-1);
    assert!(responded > 0 && responded < online, "{info}");
    assert_eq!(some, responded, "only those that answered are counted");
    assert!(
        waited >= Duration::from_millis(900),
        "the Gateway waited maxWaitTime (20 s at 20x): {waited:?}"
    );
    let (all, info) = count(&h, Value::Null, live(60)).await;
    assert_eq!(info["respondedTotal"], online, "{info}");
    assert_eq!(all, online);
}
