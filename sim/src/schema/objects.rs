//! GraphQL output types, named exactly as in the Gateway schema.

use async_graphql::{Context, Enum, ID, Object, Result, SimpleObject};

use super::inputs::{DirectConnectAlertScope, EndpointSensorRef};
use super::scalars::{Cursor, MapScalar, Time};
use crate::filter;
use crate::fleet::{EndpointSpec, Platform};
use crate::groups::Group;
use crate::packages::Package;
use crate::records::{self, ScheduledStatus};
use crate::sensors::{self, Row};
use crate::state::{Sim, State};

#[derive(SimpleObject, Debug, Clone, Default)]
pub struct SystemError {
    pub message: Option<String>,
    pub retryable: Option<bool>,
    #[graphql(name = "timedOut")]
    pub timed_out: Option<bool>,
}

impl SystemError {
    pub fn new(message: String, retryable: bool) -> Self {
        Self {
            message: Some(message),
            retryable: Some(retryable),
            timed_out: Some(false),
        }
    }
}

#[derive(SimpleObject, Debug, Clone, Default)]
pub struct PageInfo {
    #[graphql(name = "hasNextPage")]
    pub has_next_page: bool,
    #[graphql(name = "hasPreviousPage")]
    pub has_previous_page: bool,
    #[graphql(name = "startCursor")]
    pub start_cursor: Option<Cursor>,
    #[graphql(name = "endCursor")]
    pub end_cursor: Option<Cursor>,
}

impl PageInfo {
    pub fn of(w: &crate::paging::Window) -> Self {
        let empty = w.range.is_empty();
        Self {
            has_next_page: w.has_next(),
            has_previous_page: w.range.start > 0,
            start_cursor: (!empty).then(|| Cursor(w.cursor(w.range.start))),
            end_cursor: (!empty).then(|| Cursor(w.cursor(w.range.end - 1))),
        }
    }
}

#[derive(SimpleObject, Debug, Clone, Default)]
pub struct NamedRef {
    pub id: Option<ID>,
    pub name: Option<String>,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct Principal {
    pub user: NamedRef,
    pub persona: Option<NamedRef>,
}

impl Principal {
    fn of_user(name: &str) -> Self {
        Self {
            user: NamedRef {
                id: None,
                name: Some(name.to_string()),
            },
            persona: None,
        }
    }
}

#[derive(SimpleObject, Debug, Clone)]
pub struct Metadata {
    #[graphql(name = "adminFlag")]
    pub admin_flag: bool,
    pub name: String,
    pub value: String,
}

// ---------------------------------------------------------------- endpoints

#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "EndpointOS")]
pub struct EndpointOs {
    pub name: String,
    pub platform: Platform,
    pub generation: String,
    pub language: String,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct EndpointSensorReadingRefParam {
    pub name: String,
    pub value: String,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct EndpointSensorReadingRef {
    pub name: String,
    pub params: Option<Vec<EndpointSensorReadingRefParam>>,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct EndpointSensorReadingColumn {
    pub sensor: EndpointSensorReadingRef,
    pub name: String,
    pub values: Vec<String>,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct EndpointSensorReadings {
    pub columns: Vec<EndpointSensorReadingColumn>,
}

/// A snapshot of one endpoint as of the request.
#[derive(Debug, Clone)]
pub struct Endpoint(pub EndpointSpec);

#[Object]
impl Endpoint {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    #[graphql(name = "computerID")]
    async fn computer_id(&self) -> String {
        self.0.computer_id()
    }
    #[graphql(name = "systemUUID")]
    async fn system_uuid(&self) -> String {
        let h = crate::det::hash_str(&self.0.id);
        format!(
            "{:08X}-{:04X}-{:04X}-{:04X}-{:012X}",
            h >> 32,
            (h >> 16) & 0xffff,
            h & 0xffff,
            (h >> 48) & 0xffff,
            h & 0xffff_ffff_ffff
        )
    }
    async fn namespace(&self) -> &str {
        ""
    }
    #[graphql(name = "domainName")]
    async fn domain_name(&self) -> &str {
        "corp.example"
    }
    #[graphql(name = "ipAddress")]
    async fn ip_address(&self) -> &str {
        &self.0.ip
    }
    #[graphql(name = "ipAddresses")]
    async fn ip_addresses(&self) -> Option<Vec<String>> {
        Some(vec![self.0.ip.clone()])
    }
    #[graphql(name = "serialNumber")]
    async fn serial_number(&self) -> String {
        format!("SIM{:08}", crate::det::hash_str(&self.0.id) % 100_000_000)
    }
    async fn manufacturer(&self) -> &str {
        "Simulated"
    }
    async fn model(&self) -> &str {
        "Virtual Machine"
    }
    #[graphql(name = "isVirtual")]
    async fn is_virtual(&self) -> Option<bool> {
        Some(true)
    }
    #[graphql(name = "chassisType")]
    async fn chassis_type(&self) -> &str {
        "Virtual"
    }
    #[graphql(name = "lastLoggedInUser")]
    async fn last_logged_in_user(&self) -> String {
        self.0
            .processes
            .iter()
            .find(|p| !p.user.is_empty() && p.user != "SYSTEM" && p.user != "root")
            .map(|p| p.user.clone())
            .unwrap_or_default()
    }
    async fn os(&self) -> EndpointOs {
        EndpointOs {
            name: self.0.platform.os_name().to_string(),
            platform: self.0.platform,
            generation: self.0.platform.as_str().to_string(),
            language: "English".to_string(),
        }
    }
    #[graphql(name = "sensorReadings")]
    async fn sensor_readings(
        &self,
        sensors: Vec<EndpointSensorRef>,
        #[graphql(name = "includeHiddenColumns", default)] _include_hidden_columns: bool,
    ) -> Result<EndpointSensorReadings> {
        let mut columns = Vec::new();
        for s in &sensors {
            let reading = sensors::read(&self.0, &s.name)?;
            let row_filter = s.filter.as_ref().map(|f| f.to_filter()).transpose()?;
            let mut rows = Vec::new();
            for row in &reading.rows {
                let keep = match &row_filter {
                    Some(f) => filter::matches(
                        f,
                        &Row {
                            reading: &reading,
                            row,
                        },
                    )?,
                    None => true,
                };
                if keep {
                    rows.push(row);
                }
            }
            let wanted: Vec<usize> = match &s.columns {
                Some(cols) if !cols.is_empty() => cols
                    .iter()
                    .map(|c| reading.column_index(c))
                    .collect::<Result<_, _>>()?,
                _ => (0..reading.columns.len()).collect(),
            };
            let params = s.params.as_ref().map(|ps| {
                ps.iter()
                    .map(|p| EndpointSensorReadingRefParam {
                        name: p.name.clone(),
                        value: p.value.clone(),
                    })
                    .collect()
            });
            for i in wanted {
                columns.push(EndpointSensorReadingColumn {
                    sensor: EndpointSensorReadingRef {
                        name: reading.sensor.to_string(),
                        params: params.clone(),
                    },
                    name: reading.columns[i].to_string(),
                    values: rows
                        .iter()
                        .map(|r| r.get(i).cloned().unwrap_or_default())
                        .collect(),
                });
            }
        }
        Ok(EndpointSensorReadings { columns })
    }
}

#[derive(SimpleObject, Debug, Clone)]
pub struct EndpointEdge {
    pub node: Endpoint,
    pub cursor: Cursor,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct EndpointCollectionInfo {
    pub active: bool,
    pub success: bool,
    #[graphql(name = "expectedTotal")]
    pub expected_total: Option<i32>,
    #[graphql(name = "respondedTotal")]
    pub responded_total: Option<i32>,
    #[graphql(name = "contributedTotal")]
    pub contributed_total: i32,
    #[graphql(name = "respondedPercentage")]
    pub responded_percentage: Option<f64>,
    #[graphql(name = "startCursor")]
    pub start_cursor: Option<Cursor>,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct EndpointConnection {
    pub edges: Vec<EndpointEdge>,
    #[graphql(name = "pageInfo")]
    pub page_info: PageInfo,
    #[graphql(name = "totalRecords")]
    pub total_records: i32,
    #[graphql(name = "collectionInfo")]
    pub collection_info: EndpointCollectionInfo,
}

// ---------------------------------------------------------------- packages

#[derive(SimpleObject, Debug, Clone)]
pub struct PackageSpecParam {
    pub key: String,
    pub label: String,
    #[graphql(name = "defaultValue")]
    pub default_value: Option<String>,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct PackageSpecSensorSourcedParam {
    pub name: String,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct PackageSpec {
    pub id: ID,
    pub name: String,
    #[graphql(name = "contentSetName")]
    pub content_set_name: String,
    pub command: String,
    #[graphql(name = "commandTimeoutSeconds")]
    pub command_timeout_seconds: i32,
    #[graphql(name = "expireSeconds")]
    pub expire_seconds: i32,
    pub params: Option<Vec<PackageSpecParam>>,
    #[graphql(name = "sensorSourcedParams")]
    pub sensor_sourced_params: Option<Vec<PackageSpecSensorSourcedParam>>,
}

impl From<&Package> for PackageSpec {
    fn from(p: &Package) -> Self {
        Self {
            id: ID(p.id.to_string()),
            name: p.name.to_string(),
            content_set_name: p.content_set.to_string(),
            command: p.command.to_string(),
            command_timeout_seconds: p.command_timeout_seconds as i32,
            expire_seconds: p.expire_seconds as i32,
            params: Some(
                p.params
                    .iter()
                    .map(|(k, l, d)| PackageSpecParam {
                        key: k.to_string(),
                        label: l.to_string(),
                        default_value: d.map(str::to_string),
                    })
                    .collect(),
            ),
            sensor_sourced_params: Some(
                p.sensor_sourced
                    .iter()
                    .map(|n| PackageSpecSensorSourcedParam {
                        name: n.to_string(),
                    })
                    .collect(),
            ),
        }
    }
}

#[derive(SimpleObject, Debug, Clone)]
pub struct PackageSpecEdge {
    pub node: PackageSpec,
    pub cursor: Cursor,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct PackageSpecConnection {
    pub edges: Vec<PackageSpecEdge>,
    #[graphql(name = "pageInfo")]
    pub page_info: PageInfo,
    #[graphql(name = "totalRecords")]
    pub total_records: i32,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct PackageParam {
    pub name: String,
    pub value: String,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct PackageRef {
    pub id: Option<ID>,
    pub name: Option<String>,
    pub params: Option<Vec<String>>,
    #[graphql(name = "sensorSourcedParams")]
    pub sensor_sourced_params: Option<Vec<PackageParam>>,
}

// ---------------------------------------------------------------- groups

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionGroupVisibility {
    Admin,
    All,
    UserGroups,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputerGroupType {
    Standard,
    Manual,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct ComputerGroup {
    pub id: ID,
    pub name: String,
    #[graphql(name = "managementRightsEnabled")]
    pub management_rights_enabled: bool,
    #[graphql(name = "filterEnabled")]
    pub filter_enabled: bool,
    #[graphql(name = "type")]
    pub kind: ComputerGroupType,
    pub expression: String,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct ActionGroup {
    pub id: ID,
    pub name: String,
    pub visibility: ActionGroupVisibility,
    #[graphql(name = "computerGroups")]
    pub computer_groups: Vec<ComputerGroup>,
    pub any: bool,
}

impl From<&Group> for ActionGroup {
    fn from(g: &Group) -> Self {
        let expression = match g.platform {
            None => String::new(),
            Some(p) => format!("OS Platform equals \"{}\"", p.as_str()),
        };
        Self {
            id: ID(g.id.to_string()),
            name: g.name.to_string(),
            visibility: ActionGroupVisibility::All,
            computer_groups: vec![ComputerGroup {
                id: ID(g.id.to_string()),
                name: g.name.to_string(),
                management_rights_enabled: true,
                filter_enabled: g.platform.is_some(),
                kind: ComputerGroupType::Standard,
                expression,
            }],
            any: false,
        }
    }
}

#[derive(SimpleObject, Debug, Clone)]
pub struct ActionGroupEdge {
    pub node: ActionGroup,
    pub cursor: Cursor,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct ActionGroupConnection {
    pub edges: Vec<ActionGroupEdge>,
    #[graphql(name = "pageInfo")]
    pub page_info: PageInfo,
    #[graphql(name = "totalRecords")]
    pub total_records: i32,
}

// ---------------------------------------------------------------- actions

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionStatus {
    Open,
    Pending,
    Active,
    Stopped,
    Expired,
    #[graphql(visible = "super::newer")]
    Closed,
}

impl From<records::Status> for ActionStatus {
    fn from(s: records::Status) -> Self {
        match s {
            records::Status::Open => Self::Open,
            records::Status::Pending => Self::Pending,
            records::Status::Stopped => Self::Stopped,
            records::Status::Expired => Self::Expired,
        }
    }
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduledActionStatus {
    Enabled,
    Disabled,
    Deleted,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct ActionResults {
    pub id: ID,
    pub waiting: i32,
    pub downloading: i32,
    pub running: i32,
    #[graphql(name = "waitingToRetry")]
    pub waiting_to_retry: i32,
    pub completed: i32,
    pub expired: i32,
    pub failed: i32,
    #[graphql(name = "pendingVerification")]
    pub pending_verification: i32,
    pub verified: i32,
    #[graphql(name = "failedVerification")]
    pub failed_verification: i32,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct ActionTargets {
    #[graphql(name = "actionGroup")]
    pub action_group: NamedRef,
    #[graphql(name = "targetGroup")]
    pub target_group: NamedRef,
}

fn sim<'a>(ctx: &Context<'a>) -> Result<&'a Sim> {
    ctx.data::<Sim>()
}

fn targets_of(sa: &records::ScheduledAction) -> ActionTargets {
    ActionTargets {
        action_group: NamedRef {
            id: Some(ID(sa.action_group.id.to_string())),
            name: Some(sa.action_group.name.to_string()),
        },
        target_group: NamedRef {
            id: sa.target_group.0.clone().map(ID),
            name: sa.target_group.1.clone(),
        },
    }
}

fn package_of(sa: &records::ScheduledAction) -> PackageRef {
    PackageRef {
        id: Some(ID(sa.package.id.to_string())),
        name: Some(sa.package.name.to_string()),
        params: Some(sa.params.clone()),
        sensor_sourced_params: Some(
            sa.sensor_params
                .iter()
                .map(|(n, v)| PackageParam {
                    name: n.clone(),
                    value: v.clone(),
                })
                .collect(),
        ),
    }
}

/// An action instance, read from the shared state field by field.
#[derive(Debug, Clone, Copy)]
pub struct Action(pub u64);

impl Action {
    fn with<R>(
        &self,
        ctx: &Context<'_>,
        f: impl FnOnce(&State, &records::Action, &records::ScheduledAction) -> R,
    ) -> Result<R> {
        let st = sim(ctx)?.peek();
        let a = st
            .actions
            .get(&self.0)
            .ok_or_else(|| format!("action {} not found", self.0))?;
        let sa = st
            .scheduled
            .get(&a.scheduled)
            .ok_or_else(|| format!("scheduled action {} not found", a.scheduled))?;
        Ok(f(&st, a, sa))
    }
}

#[Object]
impl Action {
    async fn id(&self) -> ID {
        ID(self.0.to_string())
    }
    async fn name(&self, ctx: &Context<'_>) -> Result<String> {
        self.with(ctx, |_, _, sa| sa.name.clone())
    }
    async fn comment(&self, ctx: &Context<'_>) -> Result<String> {
        self.with(ctx, |_, _, sa| sa.comment.clone())
    }
    #[graphql(name = "expireSeconds")]
    async fn expire_seconds(&self, ctx: &Context<'_>) -> Result<Option<i32>> {
        self.with(ctx, |_, a, _| match (a.start, a.expiration) {
            (Some(s), Some(e)) => Some(e.duration_since(s).as_secs() as i32),
            _ => None,
        })
    }
    #[graphql(name = "creationTime")]
    async fn creation_time(&self, ctx: &Context<'_>) -> Result<Option<Time>> {
        self.with(ctx, |_, a, _| Some(Time(a.created)))
    }
    #[graphql(name = "startTime")]
    async fn start_time(&self, ctx: &Context<'_>) -> Result<Option<Time>> {
        self.with(ctx, |_, a, _| a.start.map(Time))
    }
    #[graphql(name = "expirationTime")]
    async fn expiration_time(&self, ctx: &Context<'_>) -> Result<Option<Time>> {
        self.with(ctx, |_, a, _| a.expiration.map(Time))
    }
    #[graphql(name = "distributeSeconds")]
    async fn distribute_seconds(&self, ctx: &Context<'_>) -> Result<Option<i32>> {
        self.with(ctx, |_, _, sa| Some(sa.schedule.distribute_seconds as i32))
    }
    async fn status(&self, ctx: &Context<'_>) -> Result<Option<ActionStatus>> {
        self.with(ctx, |st, a, _| Some(a.status(st.synced_at).into()))
    }
    #[graphql(name = "stoppedFlag")]
    async fn stopped_flag(&self, ctx: &Context<'_>) -> Result<Option<bool>> {
        self.with(ctx, |_, a, _| Some(a.stopped_at.is_some()))
    }
    async fn stopped(&self, ctx: &Context<'_>) -> Result<bool> {
        self.with(ctx, |_, a, _| a.stopped_at.is_some())
    }
    async fn targets(&self, ctx: &Context<'_>) -> Result<ActionTargets> {
        self.with(ctx, |_, _, sa| targets_of(sa))
    }
    async fn package(&self, ctx: &Context<'_>) -> Result<PackageRef> {
        self.with(ctx, |_, _, sa| package_of(sa))
    }
    #[graphql(name = "scheduledAction")]
    async fn scheduled_action(&self, ctx: &Context<'_>) -> Result<Option<ScheduledAction>> {
        self.with(ctx, |_, a, _| Some(ScheduledAction(a.scheduled)))
    }
    async fn creator(&self, ctx: &Context<'_>) -> Result<Principal> {
        self.with(ctx, |_, _, sa| Principal::of_user(&sa.creator))
    }
    async fn approver(&self, ctx: &Context<'_>) -> Result<Option<Principal>> {
        self.with(ctx, |_, _, sa| {
            sa.approver.as_deref().map(Principal::of_user)
        })
    }
    async fn metadata(&self) -> Vec<Metadata> {
        Vec::new()
    }
    async fn results(&self, ctx: &Context<'_>) -> Result<ActionResults> {
        self.with(ctx, |st, a, _| {
            let c = a.counts(st.synced_at);
            ActionResults {
                id: ID(a.id.to_string()),
                waiting: c.waiting,
                downloading: c.downloading,
                running: c.running,
                waiting_to_retry: 0,
                completed: c.completed,
                expired: c.expired,
                failed: c.failed,
                pending_verification: 0,
                verified: 0,
                failed_verification: 0,
            }
        })
    }
}

/// A scheduled action, read from the shared state field by field.
#[derive(Debug, Clone, Copy)]
pub struct ScheduledAction(pub u64);

impl ScheduledAction {
    fn with<R>(
        &self,
        ctx: &Context<'_>,
        f: impl FnOnce(&State, &records::ScheduledAction) -> R,
    ) -> Result<R> {
        let st = sim(ctx)?.peek();
        let sa = st
            .scheduled
            .get(&self.0)
            .ok_or_else(|| format!("scheduled action {} not found", self.0))?;
        Ok(f(&st, sa))
    }
}

#[Object]
impl ScheduledAction {
    async fn id(&self) -> ID {
        ID(self.0.to_string())
    }
    async fn targets(&self, ctx: &Context<'_>) -> Result<ActionTargets> {
        self.with(ctx, |_, sa| targets_of(sa))
    }
    async fn package(&self, ctx: &Context<'_>) -> Result<PackageRef> {
        self.with(ctx, |_, sa| package_of(sa))
    }
    #[graphql(name = "distributeSeconds")]
    async fn distribute_seconds(&self, ctx: &Context<'_>) -> Result<Option<i32>> {
        self.with(ctx, |_, sa| Some(sa.schedule.distribute_seconds as i32))
    }
    #[graphql(name = "expireSeconds")]
    async fn expire_seconds(&self, ctx: &Context<'_>) -> Result<Option<i32>> {
        self.with(ctx, |_, sa| {
            Some(
                sa.schedule
                    .expire_seconds
                    .unwrap_or(sa.package.expire_seconds + sa.package.command_timeout_seconds)
                    as i32,
            )
        })
    }
    #[graphql(name = "endTime")]
    async fn end_time(&self, ctx: &Context<'_>) -> Result<Option<Time>> {
        self.with(ctx, |_, sa| sa.schedule.end_time.map(Time))
    }
    #[graphql(name = "issueSeconds")]
    async fn issue_seconds(&self, ctx: &Context<'_>) -> Result<Option<i32>> {
        self.with(ctx, |_, sa| sa.schedule.reissue_seconds.map(|s| s as i32))
    }
    #[graphql(name = "startTime")]
    async fn start_time(&self, ctx: &Context<'_>) -> Result<Option<Time>> {
        self.with(ctx, |st, sa| {
            sa.actions
                .first()
                .and_then(|a| st.actions.get(a))
                .and_then(|a| a.start)
                .or(sa.schedule.start_time)
                .map(Time)
        })
    }
    async fn name(&self, ctx: &Context<'_>) -> Result<String> {
        self.with(ctx, |_, sa| sa.name.clone())
    }
    async fn comment(&self, ctx: &Context<'_>) -> Result<String> {
        self.with(ctx, |_, sa| sa.comment.clone())
    }
    async fn approved(&self, ctx: &Context<'_>) -> Result<bool> {
        self.with(ctx, |_, sa| sa.approved)
    }
    #[graphql(name = "issueCount")]
    async fn issue_count(&self, ctx: &Context<'_>) -> Result<i32> {
        self.with(ctx, |_, sa| sa.actions.len() as i32)
    }
    #[graphql(name = "lastStartTime")]
    async fn last_start_time(&self, ctx: &Context<'_>) -> Result<Option<Time>> {
        self.with(ctx, |st, sa| {
            sa.actions
                .last()
                .and_then(|a| st.actions.get(a))
                .and_then(|a| a.start)
                .map(Time)
        })
    }
    #[graphql(name = "nextStartTime")]
    async fn next_start_time(&self, ctx: &Context<'_>) -> Result<Option<Time>> {
        self.with(ctx, |_, sa| sa.next_issue.map(Time))
    }
    async fn status(&self, ctx: &Context<'_>) -> Result<Option<ScheduledActionStatus>> {
        self.with(ctx, |_, sa| {
            Some(match sa.status {
                ScheduledStatus::Enabled => ScheduledActionStatus::Enabled,
                ScheduledStatus::Deleted => ScheduledActionStatus::Deleted,
            })
        })
    }
    async fn creator(&self, ctx: &Context<'_>) -> Result<Principal> {
        self.with(ctx, |_, sa| Principal::of_user(&sa.creator))
    }
    async fn approver(&self, ctx: &Context<'_>) -> Result<Option<Principal>> {
        self.with(ctx, |_, sa| sa.approver.as_deref().map(Principal::of_user))
    }
    async fn metadata(&self) -> Vec<Metadata> {
        Vec::new()
    }
    #[graphql(name = "lastAction")]
    async fn last_action(&self, ctx: &Context<'_>) -> Result<Option<Action>> {
        self.with(ctx, |_, sa| sa.actions.last().map(|a| Action(*a)))
    }
}

#[derive(SimpleObject, Debug, Clone)]
pub struct ScheduledActionEdge {
    pub node: ScheduledAction,
    pub cursor: Cursor,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct ScheduledActionConnection {
    pub edges: Vec<ScheduledActionEdge>,
    #[graphql(name = "pageInfo")]
    pub page_info: PageInfo,
    #[graphql(name = "totalRecords")]
    pub total_records: i32,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct ActionPerformPlatform {
    pub platforms: Option<Vec<Platform>>,
    #[graphql(name = "scheduledAction")]
    pub scheduled_action: ScheduledAction,
}

#[derive(SimpleObject, Debug, Clone, Default)]
pub struct ActionPerformPayload {
    #[graphql(name = "scheduledActions")]
    pub scheduled_actions: Option<Vec<ActionPerformPlatform>>,
    pub error: Option<SystemError>,
}

#[derive(SimpleObject, Debug, Clone, Default)]
pub struct ActionStopPayload {
    pub id: Option<ID>,
    pub error: Option<SystemError>,
}

#[derive(SimpleObject, Debug, Clone, Default)]
pub struct ScheduledActionApprovePayload {
    pub id: Option<ID>,
    pub approved: Option<bool>,
    pub error: Option<SystemError>,
}

#[derive(SimpleObject, Debug, Clone, Default)]
pub struct ScheduledActionDeletePayload {
    pub id: Option<ID>,
    pub error: Option<SystemError>,
}

// ---------------------------------------------------------------- tokens

#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "APIToken")]
pub struct ApiToken {
    pub id: ID,
    #[graphql(name = "tokenString")]
    pub token_string: Option<String>,
    #[graphql(name = "trustedIPAddresses")]
    pub trusted_ip_addresses: Vec<String>,
    pub notes: String,
    pub expiration: Time,
    #[graphql(name = "lastUsed")]
    pub last_used: Time,
    pub created: Time,
}

#[derive(SimpleObject, Debug, Clone, Default)]
#[graphql(name = "APITokenRotatePayload")]
pub struct ApiTokenRotatePayload {
    pub token: Option<ApiToken>,
    pub error: Option<SystemError>,
}

// ---------------------------------------------------------------- direct connect

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectConnectConnectionStatus {
    Unknown,
    Ready,
    Connecting,
    Error,
    NotFound,
}

impl From<crate::direct_connect::ConnStatus> for DirectConnectConnectionStatus {
    fn from(s: crate::direct_connect::ConnStatus) -> Self {
        use crate::direct_connect::ConnStatus as C;
        match s {
            C::Ready => Self::Ready,
            C::Connecting => Self::Connecting,
            C::Error => Self::Error,
            C::NotFound => Self::NotFound,
        }
    }
}

#[derive(SimpleObject, Debug, Clone)]
pub struct DirectConnectPerf {
    #[graphql(name = "cpuUsagePercent")]
    pub cpu_usage_percent: f64,
    #[graphql(name = "memoryUsedPercent")]
    pub memory_used_percent: f64,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct Process {
    pub pid: i32,
    pub ppid: i32,
    pub name: String,
    #[graphql(name = "commandLine")]
    pub command_line: String,
    #[graphql(name = "userName")]
    pub user_name: String,
    #[graphql(name = "groupName")]
    pub group_name: String,
    #[graphql(name = "cpuUserTimeSeconds")]
    pub cpu_user_time_seconds: f64,
    #[graphql(name = "cpuKernelTimeSeconds")]
    pub cpu_kernel_time_seconds: f64,
    #[graphql(name = "cpuUsagePercent")]
    pub cpu_usage_percent: f64,
    /// The Gateway's Int is 64-bit here (the seed shows values past 2^31 elsewhere).
    #[graphql(name = "memoryResidentBytes")]
    pub memory_resident_bytes: i64,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct DirectConnectProcesses {
    pub all: Option<Vec<Process>>,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct EndpointAlert {
    pub schema: i32,
    pub key: Option<String>,
    #[graphql(name = "type")]
    pub kind: Option<String>,
    #[graphql(name = "ref")]
    pub reference: Option<String>,
    #[graphql(name = "topProcessesExpr")]
    pub top_processes_expr: Option<String>,
    pub labels: Option<MapScalar>,
    #[graphql(name = "pendingAt")]
    pub pending_at: Option<Time>,
    pub start: Option<Time>,
    #[graphql(name = "resolvedAt")]
    pub resolved_at: Option<Time>,
    /// Nanoseconds: 300000000000 in the seed, beyond 32 bits.
    pub leadup: Option<i64>,
    pub value: Option<f64>,
    pub firing: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct DirectConnectAlerts(pub Vec<crate::fleet::AlertSpec>);

#[Object]
impl DirectConnectAlerts {
    async fn all(&self, scope: Option<DirectConnectAlertScope>) -> Option<Vec<EndpointAlert>> {
        let in_scope = |a: &crate::fleet::AlertSpec| match (&scope, a.start) {
            (None, _) => true,
            (Some(_), None) => true,
            (Some(s), Some(start)) => {
                start >= s.start_time.0 && s.end_time.is_none_or(|e| start <= e.0)
            }
        };
        Some(
            self.0
                .iter()
                .filter(|a| in_scope(a))
                .map(|a| EndpointAlert {
                    schema: a.schema,
                    key: a.key.clone(),
                    kind: a.kind.clone(),
                    reference: None,
                    top_processes_expr: None,
                    labels: Some(MapScalar(a.labels.clone())),
                    pending_at: a.pending_at.map(Time),
                    start: a.start.map(Time),
                    resolved_at: a.resolved_at.map(Time),
                    leadup: a.leadup,
                    value: a.value,
                    firing: a.firing,
                })
                .collect(),
        )
    }
}

/// What a Direct Connect session sees on its endpoint, as of the request.
#[derive(Debug, Clone)]
pub struct DirectConnect(pub EndpointSpec);

#[Object]
impl DirectConnect {
    async fn performance(&self) -> Option<DirectConnectPerf> {
        Some(DirectConnectPerf {
            cpu_usage_percent: self.0.cpu_percent,
            memory_used_percent: self.0.memory_percent,
        })
    }
    async fn processes(&self) -> Option<DirectConnectProcesses> {
        Some(DirectConnectProcesses {
            all: Some(
                self.0
                    .processes
                    .iter()
                    .map(|p| Process {
                        pid: p.pid as i32,
                        ppid: p.ppid as i32,
                        name: p.name.clone(),
                        command_line: p.command_line.clone(),
                        user_name: p.user.clone(),
                        group_name: p.group.clone(),
                        cpu_user_time_seconds: 1.5,
                        cpu_kernel_time_seconds: 0.5,
                        cpu_usage_percent: p.cpu_percent,
                        memory_resident_bytes: p.memory,
                    })
                    .collect(),
            ),
        })
    }
    async fn alerts(&self) -> Option<DirectConnectAlerts> {
        Some(DirectConnectAlerts(self.0.alerts.clone()))
    }
}

#[derive(SimpleObject, Debug, Clone)]
pub struct DirectConnectOpenPayload {
    #[graphql(name = "connectionID")]
    pub connection_id: ID,
    pub status: DirectConnectConnectionStatus,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct DirectConnectConnectionStatusPayload {
    pub status: DirectConnectConnectionStatus,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct OpenDirectConnectionPayload {
    #[graphql(name = "connectionID")]
    pub connection_id: ID,
}

macro_rules! result_payload {
    ($($name:ident),*) => {$(
        #[derive(SimpleObject, Debug, Clone, Default)]
        pub struct $name {
            pub result: bool,
        }
    )*};
}

result_payload!(
    DirectConnectClosePayload,
    DirectConnectPingPayload,
    DirectConnectProcessTerminatePayload,
    CloseDirectConnectionPayload,
    PingDirectConnectionPayload,
    KillProcessPayload
);

// ---------------------------------------------------------------- sensors

#[derive(SimpleObject, Debug, Clone)]
pub struct SensorColumn {
    pub name: String,
    #[graphql(name = "ignoreCase")]
    pub ignore_case: bool,
    #[graphql(name = "valueType")]
    pub value_type: String,
    pub hidden: bool,
}

/// The fields of `Sensor` a client choosing between cached and live readings needs.
#[derive(SimpleObject, Debug, Clone)]
pub struct Sensor {
    pub name: String,
    pub description: String,
    #[graphql(name = "contentSetName")]
    pub content_set_name: String,
    #[graphql(name = "virtual")]
    pub is_virtual: bool,
    pub columns: Option<Vec<SensorColumn>>,
    /// Registered for collection by the Tanium Data Service.
    pub harvested: bool,
    pub parameterizations: Option<Vec<SensorParameterization>>,
    pub category: String,
    #[graphql(name = "maxAgeSeconds")]
    pub max_age_seconds: Option<i32>,
    #[graphql(name = "ignoreCase")]
    pub ignore_case: bool,
    #[graphql(name = "valueType")]
    pub value_type: String,
    pub hidden: bool,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct SensorParameterValue {
    pub name: String,
    pub value: String,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct SensorParameterization {
    pub values: Vec<SensorParameterValue>,
    pub harvested: bool,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct SensorEdge {
    pub node: Sensor,
    pub cursor: Cursor,
}

#[derive(SimpleObject, Debug, Clone)]
pub struct SensorConnection {
    pub edges: Vec<SensorEdge>,
    #[graphql(name = "pageInfo")]
    pub page_info: PageInfo,
    #[graphql(name = "totalRecords")]
    pub total_records: i32,
}
