//! Scheduled actions and their action instances: validation, targeting, per-endpoint progress
//! over simulated time, expiry, reissue, stop, approve and the packages' side effects.

use jiff::Timestamp;

use crate::clock::{add, secs};
use crate::det;
use crate::filter::{self, Filter, FilterError};
use crate::fleet::{EndpointSpec, Platform};
use crate::groups::{self, Group};
use crate::packages::{self, Effect};
use crate::records::{Action, ScheduleRequest, ScheduledAction, ScheduledStatus, Selector, Target};
use crate::state::State;

/// Tanium refuses more listed endpoints than this in one action.
pub(crate) const MAX_LISTED_ENDPOINTS: usize = 25;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PerformError {
    /// Reported in the payload's `error` (not retryable); nothing created.
    Payload(String),
    /// Reported as a GraphQL error (bad filter); nothing created.
    Graphql(String),
}

impl From<FilterError> for PerformError {
    fn from(e: FilterError) -> Self {
        PerformError::Graphql(e.to_string())
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct PerformRequest {
    pub name: Option<String>,
    pub comment: Option<String>,
    pub package_id: Option<String>,
    pub package_name: Option<String>,
    pub params: Vec<String>,
    pub sensor_params: Vec<(String, String)>,
    pub action_group_id: Option<String>,
    pub action_group_name: Option<String>,
    pub target_group_id: Option<String>,
    pub target_group_name: Option<String>,
    pub filter: Option<Filter>,
    pub endpoints: Option<Vec<String>>,
    pub platforms: Option<Vec<Platform>>,
    pub schedule: ScheduleRequest,
}

struct Completion {
    at: Timestamp,
    action: u64,
    endpoint: String,
    effect: Effect,
    params: Vec<String>,
    sensor_params: Vec<(String, String)>,
}

impl State {
    pub(crate) fn perform(
        &mut self,
        req: PerformRequest,
        creator: &str,
    ) -> Result<Vec<(Platform, u64)>, PerformError> {
        let package = match (&req.package_id, &req.package_name) {
            (None, None) => return Err(PerformError::Payload("a package is required".into())),
            (id, name) => packages::find(id.as_deref(), name.as_deref()).ok_or_else(|| {
                PerformError::Payload(format!(
                    "package not found: {}",
                    name.as_deref().or(id.as_deref()).unwrap_or_default()
                ))
            })?,
        };
        if req.params.len() != package.params.len() {
            return Err(PerformError::Payload(format!(
                "package \"{}\" takes {} parameter(s), {} given",
                package.name,
                package.params.len(),
                req.params.len()
            )));
        }
        for needed in package.sensor_sourced {
            if !req
                .sensor_params
                .iter()
                .any(|(n, v)| n == needed && !v.is_empty())
            {
                return Err(PerformError::Payload(format!(
                    "package \"{}\" needs the sensor-sourced parameter \"{needed}\"",
                    package.name
                )));
            }
        }
        let action_group = match (&req.action_group_id, &req.action_group_name) {
            (None, None) => &groups::GROUPS[0],
            (id, name) => groups::find(id.as_deref(), name.as_deref()).ok_or_else(|| {
                PerformError::Payload(format!(
                    "action group not found: {}",
                    name.as_deref().or(id.as_deref()).unwrap_or_default()
                ))
            })?,
        };
        let has_group_ref = req.target_group_id.is_some() || req.target_group_name.is_some();
        if let Some(eps) = &req.endpoints {
            if req.filter.is_some() || has_group_ref {
                return Err(PerformError::Payload(
                    "targets may have a targetGroup or endpoints, not both".into(),
                ));
            }
            if eps.len() > MAX_LISTED_ENDPOINTS {
                return Err(PerformError::Payload(format!(
                    "at most {MAX_LISTED_ENDPOINTS} endpoints may be listed, {} given",
                    eps.len()
                )));
            }
            let unknown: Vec<&str> = eps
                .iter()
                .filter(|e| self.endpoint(e).is_none())
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                return Err(PerformError::Payload(format!(
                    "unknown endpoint id(s): {}",
                    unknown.join(", ")
                )));
            }
        }
        let selector = if let Some(eps) = &req.endpoints {
            Selector::Endpoints(eps.clone())
        } else if let Some(f) = &req.filter {
            Selector::Filter(f.clone())
        } else if has_group_ref {
            let g = groups::find(
                req.target_group_id.as_deref(),
                req.target_group_name.as_deref(),
            )
            .ok_or_else(|| {
                PerformError::Payload(format!(
                    "computer group not found: {}",
                    req.target_group_name
                        .as_deref()
                        .or(req.target_group_id.as_deref())
                        .unwrap_or_default()
                ))
            })?;
            Selector::Group(g)
        } else {
            Selector::All
        };
        if let (Some(end), Some(_)) = (req.schedule.end_time, req.schedule.reissue_seconds)
            && end <= self.synced_at
        {
            return Err(PerformError::Payload(
                "schedule endTime is in the past".into(),
            ));
        }

        let mut per_platform: Vec<(Platform, Vec<String>)> = Vec::new();
        for platform in package.platforms {
            let ids = self.select(action_group, &selector, req.platforms.as_deref(), *platform)?;
            if !ids.is_empty() {
                per_platform.push((*platform, ids));
            }
        }
        if per_platform.is_empty() {
            let first = package
                .platforms
                .first()
                .copied()
                .unwrap_or(Platform::Windows);
            per_platform.push((first, Vec::new()));
        }

        let now = self.synced_at;
        let target_group = match &selector {
            Selector::Group(g) => (Some(g.id.to_string()), Some(g.name.to_string())),
            _ => (req.target_group_id.clone(), req.target_group_name.clone()),
        };
        let mut created = Vec::new();
        for (platform, ids) in per_platform {
            let sa_id = self.next_id();
            let approved = !self.approval_required;
            let mut sa = ScheduledAction {
                id: sa_id,
                name: req.name.clone().unwrap_or_default(),
                comment: req.comment.clone().unwrap_or_default(),
                package,
                params: req.params.clone(),
                sensor_params: req.sensor_params.clone(),
                platform,
                action_group,
                target_group: target_group.clone(),
                selector: selector.clone(),
                platforms: req.platforms.clone(),
                schedule: req.schedule.clone(),
                creator: creator.to_string(),
                created_wall: std::time::Instant::now(),
                approver: None,
                approved,
                status: ScheduledStatus::Enabled,
                actions: Vec::new(),
                next_issue: None,
            };
            let start = approved.then(|| sa.base_start(now));
            if let (Some(s), Some(r)) = (start, sa.reissue()) {
                sa.next_issue = Some(add(s, r));
            }
            self.scheduled.insert(sa_id, sa);
            self.issue(sa_id, ids, now, start);
            created.push((platform, sa_id));
        }
        Ok(created)
    }

    /// Endpoint ids an action of `platform` targets now.
    fn select(
        &self,
        group: &Group,
        selector: &Selector,
        platforms: Option<&[Platform]>,
        platform: Platform,
    ) -> Result<Vec<String>, FilterError> {
        if platforms.is_some_and(|ps| !ps.contains(&platform)) || !group.contains(platform) {
            return Ok(Vec::new());
        }
        let hit = |spec: &EndpointSpec| -> Result<bool, FilterError> {
            if spec.platform != platform {
                return Ok(false);
            }
            Ok(match selector {
                Selector::All | Selector::Endpoints(_) => true,
                Selector::Group(g) => g.contains(spec.platform),
                Selector::Filter(f) => filter::matches(f, spec)?,
            })
        };
        let mut out: Vec<String> = Vec::new();
        match selector {
            Selector::Endpoints(ids) => {
                for id in ids {
                    if let Some(ep) = self.endpoint(id)
                        && !out.contains(&ep.spec.id)
                        && hit(&ep.spec)?
                    {
                        out.push(ep.spec.id.clone());
                    }
                }
            }
            _ => {
                for ep in &self.endpoints {
                    if hit(&ep.spec)? {
                        out.push(ep.spec.id.clone());
                    }
                }
            }
        }
        Ok(out)
    }

    /// Creates an action instance of a scheduled action; `start` is `None` while unapproved.
    fn issue(
        &mut self,
        sa_id: u64,
        endpoints: Vec<String>,
        created: Timestamp,
        start: Option<Timestamp>,
    ) {
        let id = self.next_id();
        let Some(sa) = self.scheduled.get_mut(&sa_id) else {
            return;
        };
        let distribute = sa.schedule.distribute_seconds.max(0) as f64;
        let seed = self.seed;
        let failure_rate = self.failure_rate;
        let targets = endpoints
            .into_iter()
            .map(|ep| {
                let e = det::hash_str(&ep);
                Target {
                    offset: secs(det::unit(&[seed, id, e, 1]) * distribute),
                    download: secs(1.0 + det::unit(&[seed, id, e, 2]) * 3.0),
                    run: secs(1.0 + det::unit(&[seed, id, e, 3]) * 5.0),
                    fails: det::unit(&[seed, id, e, 4]) < failure_rate,
                    started: None,
                    finished: None,
                    endpoint: ep,
                }
            })
            .collect();
        let expiration = start.map(|s| add(s, sa.expire_after()));
        sa.actions.push(id);
        self.actions.insert(
            id,
            Action {
                id,
                scheduled: sa_id,
                created,
                start,
                expiration,
                targets,
                stopped_at: None,
                settled: false,
            },
        );
    }

    pub(crate) fn advance_actions(&mut self, now: Timestamp) {
        self.reissue_due(now);
        let mut done: Vec<Completion> = Vec::new();
        let endpoints = &self.endpoints;
        let index = &self.index;
        for action in self.actions.values_mut() {
            if action.settled {
                continue;
            }
            let (Some(start), Some(expiration)) = (action.start, action.expiration) else {
                continue;
            };
            let Some(sa) = self.scheduled.get(&action.scheduled) else {
                continue;
            };
            for tg in action.targets.iter_mut().filter(|t| t.finished.is_none()) {
                if tg.started.is_none() {
                    let eligible = add(start, tg.offset);
                    let ep = index.get(&tg.endpoint).and_then(|i| endpoints.get(*i));
                    if let Some(ep) = ep.filter(|e| e.spec.online) {
                        let begin = eligible.max(ep.online_since);
                        if begin <= now && begin < expiration {
                            tg.started = Some(begin);
                        }
                    }
                }
                if let Some(s) = tg.started {
                    let fin = add(add(s, tg.download), tg.run);
                    if fin <= now && fin < expiration {
                        tg.finished = Some(fin);
                        if !tg.fails {
                            done.push(Completion {
                                at: fin,
                                action: action.id,
                                endpoint: tg.endpoint.clone(),
                                effect: sa.package.effect,
                                params: sa.params.clone(),
                                sensor_params: sa.sensor_params.clone(),
                            });
                        }
                    }
                }
            }
            if expiration <= now {
                action.settled = true;
            }
        }
        // Effects land in completion order, so two actions on one endpoint compose as in time.
        done.sort_by_key(|c| (c.at, c.action));
        for c in done {
            self.apply(c);
        }
    }

    fn reissue_due(&mut self, now: Timestamp) {
        let due: Vec<u64> = self
            .scheduled
            .values()
            .filter(|sa| {
                sa.status == ScheduledStatus::Enabled && sa.next_issue.is_some_and(|t| t <= now)
            })
            .map(|sa| sa.id)
            .collect();
        for sa_id in due {
            while let Some(sa) = self.scheduled.get(&sa_id) {
                let (Some(at), Some(every), Some(end)) =
                    (sa.next_issue, sa.reissue(), sa.schedule.end_time)
                else {
                    break;
                };
                if at > now {
                    break;
                }
                if at > end {
                    if let Some(sa) = self.scheduled.get_mut(&sa_id) {
                        sa.next_issue = None;
                    }
                    break;
                }
                // Targets are evaluated at each reissue, against the fleet as it is now.
                let ids = self
                    .select(
                        sa.action_group,
                        &sa.selector,
                        sa.platforms.as_deref(),
                        sa.platform,
                    )
                    .unwrap_or_default();
                if let Some(sa) = self.scheduled.get_mut(&sa_id) {
                    sa.next_issue = Some(add(at, every));
                }
                self.issue(sa_id, ids, at, Some(at));
            }
        }
    }

    fn apply(&mut self, c: Completion) {
        let Some(ep) = self.endpoint_mut(&c.endpoint) else {
            return;
        };
        let spec = &mut ep.spec;
        match c.effect {
            Effect::None => {}
            Effect::AddTags => {
                for tag in c
                    .params
                    .first()
                    .map(|p| packages::split_tags(p))
                    .unwrap_or_default()
                {
                    if !spec.tags.iter().any(|t| t.eq_ignore_ascii_case(&tag)) {
                        spec.tags.push(tag);
                    }
                }
            }
            Effect::RemoveTags => {
                let remove = c
                    .params
                    .first()
                    .map(|p| packages::split_tags(p))
                    .unwrap_or_default();
                spec.tags
                    .retain(|t| !remove.iter().any(|r| r.eq_ignore_ascii_case(t)));
            }
            Effect::KillProcessByMd5 => {
                if let Some((_, md5)) = c
                    .sensor_params
                    .iter()
                    .find(|(n, _)| n == packages::KILL_PROCESS_PARAM)
                {
                    spec.processes.retain(|p| !p.md5.eq_ignore_ascii_case(md5));
                }
            }
        }
        tracing::debug!(action = c.action, endpoint = %c.endpoint, "action completed on endpoint");
    }

    /// Stops an action instance; unfinished endpoints stay as they are. Idempotent.
    pub(crate) fn stop(&mut self, id: u64) -> Result<(), PerformError> {
        let now = self.synced_at;
        let action = self
            .actions
            .get_mut(&id)
            .ok_or_else(|| PerformError::Payload(format!("action not found: {id}")))?;
        if action.stopped_at.is_none() {
            action.stopped_at = Some(now);
            action.settled = true;
        }
        Ok(())
    }

    pub(crate) fn approve(&mut self, id: u64, approver: &str) -> Result<(), PerformError> {
        let now = self.synced_at;
        let sa = self
            .scheduled
            .get_mut(&id)
            .ok_or_else(|| PerformError::Payload(format!("scheduled action not found: {id}")))?;
        if sa.approved {
            return Ok(());
        }
        if sa.creator == approver {
            return Err(PerformError::Payload(format!(
                "user \"{approver}\" created this action: a different user must approve it"
            )));
        }
        sa.approved = true;
        sa.approver = Some(approver.to_string());
        let start = sa.base_start(now);
        let expire = sa.expire_after();
        if let Some(r) = sa.reissue() {
            sa.next_issue = Some(add(start, r));
        }
        for aid in sa.actions.clone() {
            if let Some(a) = self.actions.get_mut(&aid)
                && a.start.is_none()
                && a.stopped_at.is_none()
            {
                a.start = Some(start);
                a.expiration = Some(add(start, expire));
            }
        }
        Ok(())
    }

    /// Stops reissue; the current instance runs on until it expires or is stopped.
    pub(crate) fn scheduled_deleted(&self, id: u64) -> bool {
        self.scheduled
            .get(&id)
            .is_some_and(|sa| sa.status == ScheduledStatus::Deleted)
    }

    pub(crate) fn delete_scheduled(&mut self, id: u64) -> Result<(), PerformError> {
        let sa = self
            .scheduled
            .get_mut(&id)
            .ok_or_else(|| PerformError::Payload(format!("scheduled action not found: {id}")))?;
        sa.status = ScheduledStatus::Deleted;
        sa.next_issue = None;
        Ok(())
    }
}

impl filter::Subject for ScheduledAction {
    fn values(&self, target: &filter::Target) -> Result<Vec<String>, FilterError> {
        match target {
            filter::Target::Path(p) => Ok(vec![match p.as_str() {
                "id" => self.id.to_string(),
                "name" => self.name.clone(),
                "comment" => self.comment.clone(),
                "status" => match self.status {
                    ScheduledStatus::Enabled => "ENABLED".into(),
                    ScheduledStatus::Deleted => "DELETED".into(),
                },
                "approved" => self.approved.to_string(),
                "package.name" => self.package.name.to_string(),
                "package.id" => self.package.id.to_string(),
                "creator.user.name" | "creator.name" => self.creator.clone(),
                _ => return Err(FilterError::UnknownPath(p.clone())),
            }]),
            filter::Target::Sensor { name, .. } => Err(FilterError::UnknownSensor(name.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{FleetSource, SimConfig};
    use crate::records::Status;

    fn state(size: usize) -> State {
        let config = SimConfig {
            time_scale: 0.0,
            fleet: FleetSource::Generated { size, seed: 3 },
            ..SimConfig::default()
        };
        State::new(&config, crate::fleet::generate(size, 3))
    }

    fn step(st: &mut State, secs: u64) {
        st.clock.advance(Duration::from_secs(secs));
        st.sync();
    }

    #[test]
    fn counts_always_add_up_and_reach_completion_before_expiry() {
        let mut st = state(200);
        let req = PerformRequest {
            package_name: Some("Distribute Tanium Standard Utilities".into()),
            schedule: ScheduleRequest {
                distribute_seconds: 120,
                ..ScheduleRequest::default()
            },
            ..PerformRequest::default()
        };
        let created = st.perform(req, "admin").unwrap();
        assert_eq!(
            created.len(),
            1,
            "a Windows-only package makes one scheduled action"
        );
        let sa = &st.scheduled[&created[0].1];
        let id = *sa.actions.last().unwrap();
        let targeted = st.actions[&id].targets.len() as i32;
        let windows = st
            .endpoints
            .iter()
            .filter(|e| e.spec.platform == Platform::Windows)
            .count() as i32;
        assert_eq!(targeted, windows);
        let mut last_completed = 0;
        for _ in 0..20 {
            step(&mut st, 10);
            let c = st.actions[&id].counts(st.synced_at);
            assert_eq!(c.total(), targeted);
            assert!(c.completed >= last_completed);
            last_completed = c.completed;
        }
        let online = st
            .endpoints
            .iter()
            .filter(|e| e.spec.platform == Platform::Windows && e.spec.online)
            .count() as i32;
        let c = st.actions[&id].counts(st.synced_at);
        assert_eq!(c.completed, online);
        assert_eq!(c.waiting, targeted - online);
        assert_eq!(st.actions[&id].status(st.synced_at), Status::Open);
    }
}
