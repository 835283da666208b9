//! Mutation root. Every call is audited, refused or not; injected retryable errors and
//! drop-after-commit are carried out here, where the commit happens.

use async_graphql::{Context, ID, Object, Result};

use super::inputs::{
    ActionPerformInput, ApiTokenRotateInput, CloseDirectConnectionInput, DirectConnectCloseInput,
    DirectConnectOpenInput, DirectConnectPingInput, DirectConnectProcessTerminateInput, IdRefInput,
    KillProcessInput, OpenDirectConnectionInput, PingDirectConnectionInput,
};
use super::objects::*;
use super::scalars::Time;
use crate::actions::PerformError;
use crate::audit::AuditOutcome;
use crate::config::AfterCommit;
use crate::direct_connect::{ConnStatus, DcError};
use crate::faults::{FaultPlan, WITH_ERROR_PAYLOAD};
use crate::state::{Sim, State};

/// Per-request facts the HTTP layer established.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestInfo {
    pub user: String,
    pub operation_name: Option<String>,
    pub plan: FaultPlan,
}

pub(crate) enum MutError {
    Payload(String),
    Graphql(String),
}

impl From<PerformError> for MutError {
    fn from(e: PerformError) -> Self {
        match e {
            PerformError::Payload(m) => MutError::Payload(m),
            PerformError::Graphql(m) => MutError::Graphql(m),
        }
    }
}

impl From<DcError> for MutError {
    fn from(e: DcError) -> Self {
        MutError::Graphql(e.to_string())
    }
}

/// Payloads that can carry an error in-band.
pub(crate) trait ErrorPayload {
    fn from_error(e: SystemError) -> Self;
}

macro_rules! error_payload {
    ($($t:ty),*) => {$(
        impl ErrorPayload for $t {
            fn from_error(e: SystemError) -> Self {
                Self { error: Some(e), ..Default::default() }
            }
        }
    )*};
}
error_payload!(
    ActionPerformPayload,
    ActionStopPayload,
    ScheduledActionApprovePayload,
    ScheduledActionDeletePayload,
    ApiTokenRotatePayload
);

// The Direct Connect payloads have no error field; a refusal there is `result: false`.
macro_rules! result_error_payload {
    ($($t:ty),*) => {$(
        impl ErrorPayload for $t {
            fn from_error(_: SystemError) -> Self {
                Self { result: false }
            }
        }
    )*};
}
result_error_payload!(
    DirectConnectClosePayload,
    DirectConnectPingPayload,
    DirectConnectProcessTerminatePayload,
    CloseDirectConnectionPayload,
    PingDirectConnectionPayload,
    KillProcessPayload
);

impl ErrorPayload for DirectConnectOpenPayload {
    fn from_error(_: SystemError) -> Self {
        Self {
            connection_id: ID(String::new()),
            status: DirectConnectConnectionStatus::Error,
        }
    }
}

impl ErrorPayload for OpenDirectConnectionPayload {
    fn from_error(_: SystemError) -> Self {
        Self {
            connection_id: ID(String::new()),
        }
    }
}

const TOKEN_FIELDS: &[&str] = &["tokenString"];

/// The field's arguments as JSON, with credentials blanked.
fn arguments(ctx: &Context<'_>) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    if let Ok(args) = ctx.field().arguments() {
        for (name, value) in args {
            map.insert(
                name.to_string(),
                value.into_json().unwrap_or(serde_json::Value::Null),
            );
        }
    }
    let mut v = serde_json::Value::Object(map);
    redact(&mut v);
    v
}

fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if TOKEN_FIELDS.contains(&k.as_str()) {
                    *val = serde_json::Value::String("<redacted>".into());
                } else {
                    redact(val);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

fn run<T: ErrorPayload>(
    ctx: &Context<'_>,
    op: &str,
    f: impl FnOnce(&mut State, &str) -> Result<(T, Vec<String>), MutError>,
) -> Result<T> {
    let sim = ctx.data::<Sim>()?;
    let info = ctx.data::<RequestInfo>()?;
    let input = arguments(ctx);
    let mut st = sim.lock();
    let name = info.operation_name.clone();
    if info.plan.retryable && WITH_ERROR_PAYLOAD.contains(&op) {
        let message = "injected fault: the service is temporarily unavailable, retry".to_string();
        st.record(
            &info.user,
            op,
            name,
            input,
            AuditOutcome::Error {
                message: message.clone(),
            },
        );
        return Ok(T::from_error(SystemError::new(message, true)));
    }
    match f(&mut st, &info.user) {
        Ok((payload, ids)) => {
            let after_commit = info.plan.after_commit_of(op);
            let outcome = if after_commit.is_some() {
                AuditOutcome::Dropped { ids }
            } else {
                AuditOutcome::Ok { ids }
            };
            st.record(&info.user, op, name, input, outcome);
            // Committed; the answer may still fail (the HTTP layer plays the transport's shapes).
            match after_commit {
                Some(AfterCommit::RetryablePayload) if WITH_ERROR_PAYLOAD.contains(&op) => {
                    Ok(T::from_error(SystemError::new(
                        "injected fault after commit: the service is temporarily unavailable, retry"
                            .into(),
                        true,
                    )))
                }
                Some(AfterCommit::RetryablePayload | AfterCommit::ExecutionError) => {
                    Err("injected fault after commit: internal error while resolving".into())
                }
                _ => Ok(payload),
            }
        }
        Err(MutError::Payload(message)) => {
            st.record(
                &info.user,
                op,
                name,
                input,
                AuditOutcome::Error {
                    message: message.clone(),
                },
            );
            Ok(T::from_error(SystemError::new(message, false)))
        }
        Err(MutError::Graphql(message)) => {
            st.record(
                &info.user,
                op,
                name,
                input,
                AuditOutcome::Error {
                    message: message.clone(),
                },
            );
            Err(message.into())
        }
    }
}

fn numeric(id: &ID, what: &str) -> Result<u64, MutError> {
    id.trim()
        .parse()
        .map_err(|_| MutError::Payload(format!("{what} not found: {}", id.as_str())))
}

pub struct Mutation;

#[Object(name = "Mutation")]
impl Mutation {
    #[graphql(name = "scheduledActionApprove")]
    async fn scheduled_action_approve(
        &self,
        ctx: &Context<'_>,
        r#ref: IdRefInput,
    ) -> Result<ScheduledActionApprovePayload> {
        run(ctx, "scheduledActionApprove", |st, user| {
            let id = numeric(&r#ref.id, "scheduled action")?;
            st.approve(id, user)?;
            Ok((
                ScheduledActionApprovePayload {
                    id: Some(ID(id.to_string())),
                    approved: Some(true),
                    error: None,
                },
                vec![id.to_string()],
            ))
        })
    }

    #[graphql(name = "scheduledActionDelete")]
    async fn scheduled_action_delete(
        &self,
        ctx: &Context<'_>,
        r#ref: IdRefInput,
    ) -> Result<ScheduledActionDeletePayload> {
        run(ctx, "scheduledActionDelete", |st, _| {
            let id = numeric(&r#ref.id, "scheduled action")?;
            if st.faults.refuse_delete() {
                return Err(MutError::Payload(format!(
                    "scheduled action {id} cannot be deleted now"
                )));
            }
            if st.faults.faults.delete_again_refused && st.scheduled_deleted(id) {
                return Err(MutError::Payload(format!(
                    "scheduled action not found: {id}"
                )));
            }
            st.delete_scheduled(id)?;
            Ok((
                ScheduledActionDeletePayload {
                    id: Some(ID(id.to_string())),
                    error: None,
                },
                vec![id.to_string()],
            ))
        })
    }

    #[graphql(name = "actionStop")]
    async fn action_stop(&self, ctx: &Context<'_>, r#ref: IdRefInput) -> Result<ActionStopPayload> {
        run(ctx, "actionStop", |st, _| {
            let id = numeric(&r#ref.id, "action")?;
            st.stop(id)?;
            Ok((
                ActionStopPayload {
                    id: Some(ID(id.to_string())),
                    error: None,
                },
                vec![id.to_string()],
            ))
        })
    }

    #[graphql(name = "actionPerform")]
    async fn action_perform(
        &self,
        ctx: &Context<'_>,
        input: ActionPerformInput,
    ) -> Result<ActionPerformPayload> {
        run(ctx, "actionPerform", |st, user| {
            if input.package.is_some() == input.operation.is_some() {
                return Err(MutError::Payload(
                    "exactly one of package or operation is required".into(),
                ));
            }
            let req = input
                .to_request()
                .map_err(|e| MutError::Graphql(e.to_string()))?;
            let created = st.perform(req, user)?;
            let mut ids = Vec::new();
            let mut out = Vec::new();
            for (platform, sa) in created {
                ids.push(sa.to_string());
                if let Some(last) = st.scheduled.get(&sa).and_then(|s| s.actions.last()) {
                    ids.push(last.to_string());
                }
                out.push(ActionPerformPlatform {
                    platforms: Some(vec![platform]),
                    scheduled_action: ScheduledAction(sa),
                });
            }
            Ok((
                ActionPerformPayload {
                    scheduled_actions: Some(out),
                    error: None,
                },
                ids,
            ))
        })
    }

    #[graphql(name = "apiTokenRotate")]
    async fn api_token_rotate(
        &self,
        ctx: &Context<'_>,
        input: ApiTokenRotateInput,
    ) -> Result<ApiTokenRotatePayload> {
        run(ctx, "apiTokenRotate", |st, _| {
            let (id, token, expiration) = st
                .rotate_token(&input.token_string)
                .ok_or_else(|| MutError::Payload("token not found or expired".into()))?;
            let now = st.synced_at;
            Ok((
                ApiTokenRotatePayload {
                    token: Some(ApiToken {
                        id: ID(id.clone()),
                        token_string: Some(token),
                        trusted_ip_addresses: Vec::new(),
                        notes: String::new(),
                        expiration: Time(expiration),
                        last_used: Time(now),
                        created: Time(now),
                    }),
                    error: None,
                },
                vec![id],
            ))
        })
    }

    #[graphql(name = "directConnectOpen", visible = "super::newer")]
    async fn direct_connect_open(
        &self,
        ctx: &Context<'_>,
        input: DirectConnectOpenInput,
    ) -> Result<DirectConnectOpenPayload> {
        if !super::newer(ctx) {
            return Err(super::absent("directConnectOpen", "Mutation"));
        }
        run(ctx, "directConnectOpen", |st, _| {
            let (id, status) = st.dc_open(&input.endpoint_id, false);
            Ok((
                DirectConnectOpenPayload {
                    connection_id: ID(id.clone()),
                    status: status.into(),
                },
                vec![id],
            ))
        })
    }

    #[graphql(name = "directConnectClose", visible = "super::newer")]
    async fn direct_connect_close(
        &self,
        ctx: &Context<'_>,
        input: DirectConnectCloseInput,
    ) -> Result<DirectConnectClosePayload> {
        if !super::newer(ctx) {
            return Err(super::absent("directConnectClose", "Mutation"));
        }
        run(ctx, "directConnectClose", |st, _| {
            let result = st.dc_close(&input.connection_id)?;
            Ok((
                DirectConnectClosePayload { result },
                vec![input.connection_id.to_string()],
            ))
        })
    }

    #[graphql(name = "directConnectPing", visible = "super::newer")]
    async fn direct_connect_ping(
        &self,
        ctx: &Context<'_>,
        input: DirectConnectPingInput,
    ) -> Result<DirectConnectPingPayload> {
        if !super::newer(ctx) {
            return Err(super::absent("directConnectPing", "Mutation"));
        }
        run(ctx, "directConnectPing", |st, _| {
            let result = st.dc_ping(&input.connection_id)?;
            Ok((
                DirectConnectPingPayload { result },
                vec![input.connection_id.to_string()],
            ))
        })
    }

    #[graphql(name = "directConnectProcessTerminate", visible = "super::newer")]
    async fn direct_connect_process_terminate(
        &self,
        ctx: &Context<'_>,
        input: DirectConnectProcessTerminateInput,
    ) -> Result<DirectConnectProcessTerminatePayload> {
        if !super::newer(ctx) {
            return Err(super::absent("directConnectProcessTerminate", "Mutation"));
        }
        run(ctx, "directConnectProcessTerminate", |st, _| {
            let ep = st.dc_use(&input.connection_id)?;
            let result = st.dc_terminate(&ep, i64::from(input.pid), &input.name);
            Ok((DirectConnectProcessTerminatePayload { result }, vec![ep]))
        })
    }

    #[graphql(name = "openDirectConnection")]
    async fn open_direct_connection(
        &self,
        ctx: &Context<'_>,
        input: OpenDirectConnectionInput,
    ) -> Result<OpenDirectConnectionPayload> {
        run(ctx, "openDirectConnection", |st, _| {
            let ep = input
                .endpoint_id
                .as_ref()
                .map(|e| e.to_string())
                .ok_or_else(|| MutError::Graphql("endpointID is required".into()))?;
            let (id, status) = st.dc_open(&ep, true);
            match status {
                ConnStatus::Ready | ConnStatus::Connecting => Ok((
                    OpenDirectConnectionPayload {
                        connection_id: ID(id.clone()),
                    },
                    vec![id],
                )),
                ConnStatus::NotFound => {
                    st.connections.remove(&id);
                    Err(DcError::UnknownEndpoint(ep).into())
                }
                ConnStatus::Error => {
                    st.connections.remove(&id);
                    Err(MutError::Graphql(format!(
                        "cannot open a direct connection to endpoint \"{ep}\": it is offline"
                    )))
                }
            }
        })
    }

    #[graphql(name = "closeDirectConnection")]
    async fn close_direct_connection(
        &self,
        ctx: &Context<'_>,
        input: CloseDirectConnectionInput,
    ) -> Result<CloseDirectConnectionPayload> {
        run(ctx, "closeDirectConnection", |st, _| {
            let result = st.dc_close(&input.connection_id)?;
            Ok((
                CloseDirectConnectionPayload { result },
                vec![input.connection_id.to_string()],
            ))
        })
    }

    #[graphql(name = "pingDirectConnection")]
    async fn ping_direct_connection(
        &self,
        ctx: &Context<'_>,
        input: PingDirectConnectionInput,
    ) -> Result<PingDirectConnectionPayload> {
        run(ctx, "pingDirectConnection", |st, _| {
            let result = st.dc_ping(&input.connection_id)?;
            Ok((
                PingDirectConnectionPayload { result },
                vec![input.connection_id.to_string()],
            ))
        })
    }

    #[graphql(name = "killProcess")]
    async fn kill_process(
        &self,
        ctx: &Context<'_>,
        input: KillProcessInput,
    ) -> Result<KillProcessPayload> {
        run(ctx, "killProcess", |st, _| {
            let ep = match (
                &input.connection_id,
                input.endpoint.as_ref().and_then(|e| e.endpoint_id.as_ref()),
            ) {
                (Some(c), _) => st.dc_use(c)?,
                (None, Some(e)) => st.dc_use_endpoint(e)?,
                (None, None) => {
                    return Err(MutError::Graphql(
                        "killProcess needs connectionID or endpoint".into(),
                    ));
                }
            };
            let result = st.dc_terminate(&ep, i64::from(input.pid), &input.name);
            Ok((KillProcessPayload { result }, vec![ep]))
        })
    }
}
