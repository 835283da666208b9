//! Token rotation end to end: the real apiserver holds the token Secret, tanium-sim issues tokens that expire and
//! rotates them. Rotated ahead of expiry and used at once; a crash after the write is finished on restart; a
//! crash between `apiTokenRotate` and the write is reported everywhere a person looks and never rotated again,
//! until a person puts a valid token into the Secret. A person's edit to the Secret in between does not lose the
//! new token.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Env, TOKEN};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use secrecy::SecretString;
use serde_json::json;
use tanium_operator::controller::Policy;
use tanium_operator::controller::rotation::{
    EXPIRES_AT, ROTATION_STARTED_AT, RotationConfig, TOKEN_FINGERPRINT, fingerprint,
};
use tanium_operator::crd;
use tanium_sim::TokenUser;

const NS: &str = "tanium-system";
const SECRET: &str = "tanium-api-token";

/// The sim's clock runs 20x: the token expires two sim-hours after start, and is rotated within a sim-hour and
/// 59 minutes of expiry, i.e. after about three real seconds.
fn rotation() -> RotationConfig {
    RotationConfig {
        namespace: NS.into(),
        secret: SECRET.into(),
        key: "token".into(),
        lead: Duration::from_secs(119 * 60),
        check_every: Duration::from_millis(500),
    }
}

async fn start() -> Option<(Env, Api<Secret>)> {
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2);
    let env = Env::start(Policy::default(), |c| {
        c.tokens = vec![TokenUser::new(TOKEN, "operator").expiring_at(expires)];
    })
    .await?;
    env.kubectl(&["create", "namespace", NS]);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NS);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": SECRET, "annotations": {EXPIRES_AT: expires.to_string()}},
        "stringData": {"token": TOKEN},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    Some((env, secrets))
}

fn token_in(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

fn annotation<'a>(secret: &'a Secret, key: &str) -> Option<&'a String> {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
}

async fn wait_secret(secrets: &Api<Secret>, what: &str, done: impl Fn(&Secret) -> bool) -> Secret {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = secrets.get(SECRET).await.unwrap();
        if done(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Secret never {what}: annotations {:?}, keys {:?}",
            s.metadata.annotations,
            s.data.as_ref().map(|d| d.keys().collect::<Vec<_>>())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rotations(env: &Env) -> usize {
    env.sim
        .sim()
        .audit()
        .iter()
        .filter(|e| e.operation == "apiTokenRotate")
        .count()
}

/// Wait until the sim saw the first `apiTokenRotate`.
async fn rotated(env: &Env) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while rotations(env) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never rotated");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Settled: the token is not the first one, no old token kept, no rotation in flight.
fn settled(s: &Secret) -> bool {
    token_in(s, "token").is_some_and(|t| t != TOKEN)
        && token_in(s, "token.previous").is_none()
        && annotation(s, ROTATION_STARTED_AT).is_none()
}

#[tokio::test]
async fn rotated_before_expiry_written_back_and_used() {
    let Some((mut env, secrets)) = start().await else {
        return;
    };
    let client = env.client.clone();
    let ctx = env.start_controller_with(client, TOKEN, |c| c.token_rotation = Some(rotation()));
    let secret = wait_secret(&secrets, "rotated", settled).await;
    let new = token_in(&secret, "token").unwrap();
    assert!(
        !env.sim.sim().accepts_token(TOKEN),
        "the old token is refused"
    );
    assert!(env.sim.sim().accepts_token(&new));
    let expires: jiff::Timestamp = annotation(&secret, EXPIRES_AT).unwrap().parse().unwrap();
    assert_eq!(Some(expires), env.sim.sim().token_expiry(&new));
    assert_eq!(
        annotation(&secret, TOKEN_FINGERPRINT),
        Some(&fingerprint(&SecretString::from(new.clone()))),
        "the expiry says which token it belongs to"
    );
    assert_eq!(rotations(&env), 1);
    assert_eq!(
        ctx.metrics.token_expires_at("own"),
        Some(expires.as_second()),
        "the expiry metric is the new token's expiry"
    );
    env.wait_for_event(NS, SECRET, |r, _| r == "TokenRotated")
        .await;

    // Work goes on with the new token, and it was rotated once only.
    let api = env.namespace("after").await;
    env.create(&api, common::example("tag-by-endpoint-id"))
        .await;
    let done = env
        .wait_for(&api, "tag-by-endpoint-id", "Completed", |o| {
            common::phase(o).as_deref() == Some("Completed")
        })
        .await;
    assert_eq!(env.performs_for(&done), 1);
    assert!(
        done.status.as_ref().is_some_and(|s| crd::condition(
            &s.conditions,
            crd::condition::GATEWAY_TOKEN
        )
        .is_none())
    );
    assert_eq!(rotations(&env), 1);
    let everything = env.kubectl(&["get", "taniumactions,events", "-A", "-o", "json"]);
    assert!(
        !everything.contains(&new) && !everything.contains(TOKEN),
        "a token in status or events"
    );
    env.stop_controller();
}

#[tokio::test]
async fn a_crash_after_the_write_is_finished_on_restart_and_an_edit_meanwhile_loses_nothing() {
    let Some((mut env, secrets)) = start().await else {
        return;
    };
    let client = env.client.clone();
    let ctx = env.start_controller_with(client.clone(), TOKEN, |c| {
        c.token_rotation = Some(rotation())
    });
    ctx.fail_points
        .hang_after_rotate
        .store(true, Ordering::SeqCst);
    ctx.fail_points
        .hang_after_token_write
        .store(true, Ordering::SeqCst);
    rotated(&env).await;
    // A person labels the Secret while the new token is only in memory: the write is redone on that version.
    secrets
        .patch(
            SECRET,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "secops"}}})),
        )
        .await
        .unwrap();
    ctx.fail_points
        .hang_after_rotate
        .store(false, Ordering::SeqCst);
    let written = wait_secret(&secrets, "written", |s| {
        token_in(s, "token.previous").is_some()
    })
    .await;
    assert_eq!(
        token_in(&written, "token.previous").as_deref(),
        Some(TOKEN),
        "the old token is kept"
    );
    assert_eq!(
        written
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("team"))
            .map(String::as_str),
        Some("secops")
    );
    assert!(annotation(&written, ROTATION_STARTED_AT).is_some());
    // Killed before confirming; the next start confirms and lets the old token go, rotating nothing again.
    env.stop_controller();
    env.start_controller_with(client, TOKEN, |c| c.token_rotation = Some(rotation()));
    let secret = wait_secret(&secrets, "confirmed", settled).await;
    assert_eq!(token_in(&secret, "token"), token_in(&written, "token"));
    assert_eq!(rotations(&env), 1);
    env.stop_controller();
}

#[tokio::test]
async fn a_crash_between_rotate_and_write_is_reported_and_not_repeated() {
    let Some((mut env, secrets)) = start().await else {
        return;
    };
    let client = env.client.clone();
    let ctx = env.start_controller_with(client.clone(), TOKEN, |c| {
        c.token_rotation = Some(rotation())
    });
    ctx.fail_points
        .hang_after_rotate
        .store(true, Ordering::SeqCst);
    rotated(&env).await;
    env.stop_controller();
    // The new token died with the process; the Secret holds the old one, which the Gateway refuses.
    let ctx = env.start_controller_with(client.clone(), TOKEN, |c| {
        c.token_rotation = Some(rotation())
    });
    let api = env.namespace("locked").await;
    env.create(&api, common::example("tag-by-endpoint-id"))
        .await;
    let held = env
        .wait_for(&api, "tag-by-endpoint-id", "GatewayToken=False", |o| {
            o.status.as_ref().is_some_and(|s| {
                crd::condition(&s.conditions, crd::condition::GATEWAY_TOKEN)
                    .is_some_and(|c| c.status == "False" && c.reason == "TokenRotationLost")
            })
        })
        .await;
    let message = &crd::condition(
        &held.status.as_ref().unwrap().conditions,
        crd::condition::GATEWAY_TOKEN,
    )
    .unwrap()
    .message;
    assert!(
        message.contains("Create a new API token in Tanium"),
        "{message}"
    );
    env.wait_for_event(NS, SECRET, |r, _| r == "TokenRotationLost")
        .await;
    assert_eq!(env.performs_for(&held), 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rotations(&env),
        1,
        "a lost rotation is not tried again with a refused token"
    );
    let secret = secrets.get(SECRET).await.unwrap();
    assert_eq!(
        token_in(&secret, "token").as_deref(),
        Some(TOKEN),
        "the Secret is left as it was"
    );
    drop(ctx);

    // A person issues a token and puts it into the Secret: rotation resumes, the object proceeds.
    let fresh = "token-issued-by-a-person-6b1d";
    env.sim.sim().add_token(TokenUser::new(fresh, "operator"));
    secrets
        .patch(
            SECRET,
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"token": fresh}})),
        )
        .await
        .unwrap();
    let done = env
        .wait_for(&api, "tag-by-endpoint-id", "Completed", |o| {
            common::phase(o).as_deref() == Some("Completed")
        })
        .await;
    assert_eq!(env.performs_for(&done), 1);
    assert!(
        crd::condition(
            &done.status.as_ref().unwrap().conditions,
            crd::condition::GATEWAY_TOKEN
        )
        .is_none(),
        "a finished action keeps no operator condition"
    );
    let secret = wait_secret(&secrets, "rotation resumed", |s| {
        annotation(s, ROTATION_STARTED_AT).is_none()
    })
    .await;
    assert!(token_in(&secret, "token").is_some_and(|t| env.sim.sim().accepts_token(&t)));
    env.stop_controller();
}
