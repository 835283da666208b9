//! TaniumTag end to end: real kube-apiserver + etcd, tanium-sim over HTTP, the controller in-process.

mod common;

use std::time::Duration;

use common::Env;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tanium_operator::controller::Policy;
use tanium_operator::crd::TaniumTag;
use tanium_operator::crd::tag::TagPhase;
use tanium_sim::{EndpointSpec, Platform};

fn tag_manifest(name: &str, spec: serde_json::Value) -> TaniumTag {
    serde_json::from_value(json!({
        "apiVersion": "tanium-operator.dev/v1alpha1", "kind": "TaniumTag", "metadata": {"name": name}, "spec": spec
    }))
    .expect("a TaniumTag")
}

fn in_sync(tagged: u64) -> impl Fn(&TaniumTag) -> bool {
    move |t| {
        t.status.as_ref().is_some_and(|s| {
            s.phase == Some(TagPhase::InSync) && s.tagged == Some(tagged) && s.pending == Some(0)
        })
    }
}

fn web_endpoints(from: usize, to: usize) -> Vec<EndpointSpec> {
    (from..=to)
        .map(|i| EndpointSpec::new(format!("web-{i:03}"), Platform::Linux))
        .collect()
}

fn tags_of(env: &Env, ids: &[String]) -> Vec<Vec<String>> {
    ids.iter()
        .map(|id| env.sim.sim().endpoint(id).expect("endpoint").tags)
        .collect()
}

#[tokio::test]
async fn tags_follow_the_fleet_and_the_spec() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.start_controller();
    env.namespace("tags").await;
    let api: Api<TaniumTag> = Api::namespaced(env.client.clone(), "tags");
    let first = env.sim.sim().add_endpoints(web_endpoints(1, 200));

    let spec = json!({
        "tags": ["web-tier"],
        "targets": {"filter": {"sensor": {"name": "Computer Name"}, "op": "STARTS_WITH", "value": "web-"}},
        "interval": "2s"
    });
    let obj = api
        .create(&PostParams::default(), &tag_manifest("web", spec))
        .await
        .unwrap();
    let synced = env
        .wait_until(&api, "web", "200 tagged", in_sync(200))
        .await;
    assert_eq!(synced.status.as_ref().unwrap().matched, Some(200));
    assert!(
        tags_of(&env, &first)
            .iter()
            .all(|t| t.contains(&"web-tier".to_string()))
    );
    assert_eq!(env.performs_for(&obj), 1);

    // Steady state: every endpoint is tagged, so the rounds make no Gateway write at all.
    let before = env.mutation_count();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        env.mutation_count(),
        before,
        "a steady state mutates nothing"
    );

    // Drift: 20 new matching endpoints; the next round targets exactly them.
    let new = env.sim.sim().add_endpoints(web_endpoints(201, 220));
    let after = env
        .wait_until(&api, "web", "220 tagged", in_sync(220))
        .await;
    let round = after.status.as_ref().unwrap().last_round.clone().unwrap();
    assert_eq!(round.targeted, 20);
    let results = round.results.unwrap();
    assert_eq!(
        (results.counts.total(), results.counts.completed),
        (20, 20),
        "exactly the new endpoints"
    );
    assert_eq!(env.performs_for(&obj), 2);
    // From the sim's audit: the second deployment's targeting excludes endpoints that already carry the tag.
    let performs: Vec<_> = env
        .sim
        .sim()
        .audit()
        .into_iter()
        .filter(|e| {
            e.operation == "actionPerform"
                && e.input
                    .to_string()
                    .contains(obj.metadata.uid.as_deref().unwrap())
        })
        .collect();
    let filter = performs[1]
        .input
        .pointer("/input/targets/targetGroup/filter")
        .unwrap()
        .to_string();
    assert!(
        filter.contains("\"negated\":true") && filter.contains("web-tier"),
        "{filter}"
    );
    assert!(
        tags_of(&env, &new)
            .iter()
            .all(|t| t.contains(&"web-tier".to_string()))
    );

    // Edit: one tag in, one tag out.
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"tags": ["frontend"]}})),
    )
    .await
    .unwrap();
    env.wait_until(&api, "web", "frontend only", |t| {
        in_sync(220)(t) && t.status.as_ref().unwrap().applied_tags == vec!["frontend".to_string()]
    })
    .await;
    let all: Vec<String> = first.iter().chain(new.iter()).cloned().collect();
    for tags in tags_of(&env, &all) {
        assert!(
            tags.contains(&"frontend".to_string()) && !tags.contains(&"web-tier".to_string()),
            "{tags:?}"
        );
    }

    // Delete: the tags come off before the object goes.
    api.delete("web", &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while api.get_opt("web").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not deleted in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        tags_of(&env, &all)
            .iter()
            .all(|t| !t.contains(&"frontend".to_string())),
        "tags removed on deletion"
    );
    env.assert_exactly_once();
}

#[tokio::test]
async fn overlapping_tags_endpoint_ids_and_suspend() {
    let Some(mut env) = Env::start(Policy::default(), |_| {}).await else {
        return;
    };
    env.start_controller();
    env.namespace("overlap").await;
    let api: Api<TaniumTag> = Api::namespaced(env.client.clone(), "overlap");
    // Online endpoints only: an offline one would stay pending (and be retried every round) until it is back.
    let wins = env.sim.sim().add_endpoints(
        (1..=30)
            .map(|i| EndpointSpec::new(format!("win-{i:02}"), Platform::Windows))
            .collect(),
    );
    let windows = json!({"filter": {"sensor": {"name": "Computer Name"}, "op": "STARTS_WITH", "value": "win-"}});
    let both = json!({"endpoints": [wins[0], wins[1]]});
    api.create(
        &PostParams::default(),
        &tag_manifest(
            "team-a",
            json!({"tags": ["team-a"], "targets": windows, "interval": "2s"}),
        ),
    )
    .await
    .unwrap();
    api.create(
        &PostParams::default(),
        &tag_manifest(
            "pinned",
            json!({"tags": ["pinned", "team-b"], "targets": both, "interval": "2s"}),
        ),
    )
    .await
    .unwrap();
    let held = api
        .create(
            &PostParams::default(),
            &tag_manifest(
                "held",
                json!({"tags": ["held"], "targets": both, "interval": "2s", "suspend": true}),
            ),
        )
        .await
        .unwrap();

    let a = env
        .wait_until(&api, "team-a", "in sync", |t| {
            t.status
                .as_ref()
                .is_some_and(|s| s.phase == Some(TagPhase::InSync))
        })
        .await;
    assert_eq!(a.status.as_ref().unwrap().tagged, Some(30));
    env.wait_until(&api, "pinned", "2 tagged", in_sync(2)).await;
    for id in [&wins[0], &wins[1]] {
        let tags = env.sim.sim().endpoint(id).unwrap().tags;
        for t in ["team-a", "pinned", "team-b"] {
            assert!(tags.contains(&t.to_string()), "{id}: {tags:?}");
        }
        assert!(!tags.contains(&"held".to_string()));
    }
    env.wait_until(&api, "held", "Suspended", |t| {
        t.status
            .as_ref()
            .is_some_and(|s| s.phase == Some(TagPhase::Suspended))
    })
    .await;
    assert_eq!(env.performs_for(&held), 0, "suspended: nothing deployed");

    // Bad input is refused by the apiserver.
    let bad = api
        .create(
            &PostParams::default(),
            &tag_manifest("bad", json!({"tags": ["has space"], "targets": both})),
        )
        .await;
    assert!(
        matches!(bad, Err(kube::Error::Api(ref s)) if s.code == 422 && s.message.contains("a tag starts with")),
        "{bad:?}"
    );
    let unapproved = api
        .create(
            &PostParams::default(),
            &tag_manifest(
                "approval",
                json!({"tags": ["x"], "targets": both, "safety": {"requirePreviewApproval": true}}),
            ),
        )
        .await;
    assert!(
        matches!(unapproved, Err(kube::Error::Api(ref s)) if s.code == 422),
        "{unapproved:?}"
    );
    env.assert_exactly_once();
}
