//! Query root.

use async_graphql::{Context, ID, Object, Result};

use super::RequestInfo;
use super::inputs::{
    DirectConnectConnectionStatusInput, DirectConnectEndpointInput, EndpointFieldFilter,
    EndpointSource, FieldFilter, IdRefInput, NamedRefInput, OpenDirectConnectionInput,
};
use super::objects::{
    Action, ActionGroup, ActionGroupConnection, ActionGroupEdge, DirectConnect,
    DirectConnectConnectionStatusPayload, Endpoint, EndpointCollectionInfo, EndpointConnection,
    EndpointEdge, PackageSpec, PackageSpecConnection, PackageSpecEdge, PageInfo, ScheduledAction,
    ScheduledActionConnection, ScheduledActionEdge, Sensor, SensorColumn, SensorConnection,
    SensorEdge,
};
use super::scalars::{Cursor, Time};
use crate::faults::ReadFault;
use crate::filter;
use crate::groups;
use crate::packages;
use crate::state::Sim;
use crate::{det, sensors};

fn twenty() -> Option<i32> {
    Some(crate::paging::DEFAULT_PAGE)
}

fn parse_id(id: &ID) -> Option<u64> {
    id.trim().parse().ok()
}

/// Answer this read as the injected faults say: `Ok(true)` for null, an error (with this field's path) for a
/// failed read, `Ok(false)` to answer it truly.
fn read_fault(ctx: &Context<'_>) -> Result<bool> {
    let key = ctx.item.node.response_key().node.as_str();
    match ctx.data::<RequestInfo>()?.plan.reads.get(key) {
        Some(ReadFault::Null) => Ok(true),
        Some(ReadFault::Error) => Err("injected fault: this read failed".into()),
        Some(ReadFault::UnknownStatus) | None => Ok(false),
    }
}

pub struct Query;

#[Object(name = "Query")]
impl Query {
    async fn now(&self, ctx: &Context<'_>) -> Result<Time> {
        Ok(Time(ctx.data::<Sim>()?.peek().synced_at))
    }

    async fn action(&self, ctx: &Context<'_>, r#ref: IdRefInput) -> Result<Option<Action>> {
        if read_fault(ctx)? {
            return Ok(None);
        }
        let st = ctx.data::<Sim>()?.peek();
        Ok(parse_id(&r#ref.id)
            .filter(|id| st.actions.contains_key(id))
            .map(Action))
    }

    #[graphql(name = "scheduledAction")]
    async fn scheduled_action(
        &self,
        ctx: &Context<'_>,
        r#ref: IdRefInput,
    ) -> Result<Option<ScheduledAction>> {
        if read_fault(ctx)? {
            return Ok(None);
        }
        let st = ctx.data::<Sim>()?.peek();
        Ok(parse_id(&r#ref.id)
            .filter(|id| st.scheduled.contains_key(id))
            .map(ScheduledAction))
    }

    #[graphql(name = "scheduledActions")]
    async fn scheduled_actions(
        &self,
        ctx: &Context<'_>,
        after: Option<Cursor>,
        #[graphql(default_with = "twenty()")] first: Option<i32>,
        filter: Option<FieldFilter>,
    ) -> Result<Option<ScheduledActionConnection>> {
        let restrict_owner = filter.as_ref().is_some_and(|f| f.restrict_owner);
        let by_name = filter.as_ref().is_some_and(FieldFilter::names_path);
        let f = filter.map(|f| f.to_filter()).transpose()?;
        let user = ctx
            .data::<RequestInfo>()
            .map(|i| i.user.clone())
            .unwrap_or_default();
        let mut st = ctx.data::<Sim>()?.peek();
        let listing = st.listing;
        let lag = std::time::Duration::from_millis(listing.name_filter_lag_ms);
        let mut ids = Vec::new();
        for sa in st.scheduled.values() {
            // Where the docs are silent: a name index that lags, and a default that lists only one's own.
            if by_name && sa.created_wall.elapsed() < lag {
                continue;
            }
            if listing.restrict_owner && restrict_owner && sa.creator != user {
                continue;
            }
            if f.as_ref()
                .map(|f| filter::matches(f, sa))
                .transpose()?
                .unwrap_or(true)
            {
                ids.push(sa.id);
            }
        }
        let w = st.page(ids.len(), first, after.as_ref().map(|c| c.0.as_str()))?;
        Ok(Some(ScheduledActionConnection {
            edges: w
                .range
                .clone()
                .map(|i| ScheduledActionEdge {
                    node: ScheduledAction(ids[i]),
                    cursor: Cursor(w.cursor(i)),
                })
                .collect(),
            page_info: PageInfo::of(&w),
            total_records: ids.len() as i32,
        }))
    }

    #[graphql(name = "actionGroups")]
    async fn action_groups(
        &self,
        ctx: &Context<'_>,
        after: Option<Cursor>,
        #[graphql(default_with = "twenty()")] first: Option<i32>,
    ) -> Result<Option<ActionGroupConnection>> {
        let mut st = ctx.data::<Sim>()?.peek();
        let all = groups::GROUPS;
        let w = st.page(all.len(), first, after.as_ref().map(|c| c.0.as_str()))?;
        Ok(Some(ActionGroupConnection {
            edges: w
                .range
                .clone()
                .map(|i| ActionGroupEdge {
                    node: ActionGroup::from(&all[i]),
                    cursor: Cursor(w.cursor(i)),
                })
                .collect(),
            page_info: PageInfo::of(&w),
            total_records: all.len() as i32,
        }))
    }

    #[graphql(name = "actionGroup")]
    async fn action_group(&self, r#ref: NamedRefInput) -> Option<ActionGroup> {
        groups::find(r#ref.id.as_ref().map(|i| i.as_str()), r#ref.name.as_deref())
            .map(ActionGroup::from)
    }

    async fn endpoints(
        &self,
        ctx: &Context<'_>,
        after: Option<Cursor>,
        #[graphql(default_with = "twenty()")] first: Option<i32>,
        filter: Option<EndpointFieldFilter>,
        source: Option<EndpointSource>,
    ) -> Result<Option<EndpointConnection>> {
        let f = filter.map(|f| f.to_filter()).transpose()?;
        let live = source.as_ref().and_then(|s| s.ts.as_ref());
        // The state lock is not held across the Gateway's wait.
        let (answer, pause) = {
            let mut st = ctx.data::<Sim>()?.peek();
            let modes = st.sources;
            let (now, seed) = (st.synced_at, st.seed);
            // A live question goes to every online endpoint; each answers after its own delay, and the Gateway waits
            // at most maxWaitTime. The cached answer holds every endpoint's last collected readings.
            let spread = modes.live_answer_spread_ms as f64;
            let delay_ms = |id: &str| det::unit(&[seed, det::hash_str(id), 0x7453]) * spread;
            let max_wait_ms = live.map_or(0.0, |t| f64::from(t.max_wait_time.max(0)) * 1000.0);
            let aged = live.is_none() && modes.tds_max_age_ms > 0;
            let max_age = std::time::Duration::from_millis(modes.tds_max_age_ms);
            let mut matched = Vec::new();
            let (mut online, mut responded, mut slowest) = (0usize, 0usize, 0.0f64);
            for (i, ep) in st.endpoints.iter_mut().enumerate() {
                if live.is_some() {
                    if !ep.spec.online {
                        continue;
                    }
                    online += 1;
                    let d = delay_ms(&ep.spec.id);
                    if d > max_wait_ms {
                        continue;
                    }
                    responded += 1;
                    slowest = slowest.max(d);
                } else if aged {
                    let stale = ep
                        .collected
                        .as_ref()
                        .is_none_or(|(_, at)| now.duration_since(*at).unsigned_abs() >= max_age);
                    if stale {
                        // First seen: a reading of some age within the bound, taken from what the endpoint is now.
                        let age = match ep.collected {
                            None => max_age.mul_f64(det::unit(&[
                                seed,
                                det::hash_str(&ep.spec.id),
                                0x7464,
                            ])),
                            Some(_) => std::time::Duration::ZERO,
                        };
                        let at = now.checked_sub(age).unwrap_or(now);
                        ep.collected = Some((ep.spec.clone(), at));
                    }
                }
                let seen = match (&ep.collected, aged) {
                    (Some((spec, _)), true) => spec,
                    _ => &ep.spec,
                };
                let subject = sensors::Collected {
                    spec: seen,
                    registered_only: live.is_none() && modes.tds_registered_only,
                };
                if f.as_ref()
                    .map(|f| filter::matches(f, &subject))
                    .transpose()?
                    .unwrap_or(true)
                {
                    matched.push(i);
                }
            }
            let w = st.page(matched.len(), first, after.as_ref().map(|c| c.0.as_str()))?;
            let edges = w
                .range
                .clone()
                .map(|i| {
                    let ep = &st.endpoints[matched[i]];
                    let seen = match (&ep.collected, aged) {
                        (Some((spec, _)), true) => spec,
                        _ => &ep.spec,
                    };
                    EndpointEdge {
                        node: Endpoint(seen.clone()),
                        cursor: Cursor(w.cursor(i)),
                    }
                })
                .collect();
            let (expected, responded) = match live {
                Some(t) => (t.expected_count.unwrap_or(online as i32), responded),
                None => (matched.len() as i32, matched.len()),
            };
            // The Gateway answers once every online endpoint did, or when maxWaitTime ran out.
            let waited = match live {
                Some(_) if responded < online => max_wait_ms,
                Some(_) => slowest,
                None => 0.0,
            };
            let pause = st
                .clock
                .real(std::time::Duration::from_millis(waited as u64));
            let answer = EndpointConnection {
                edges,
                page_info: PageInfo::of(&w),
                total_records: matched.len() as i32,
                collection_info: EndpointCollectionInfo {
                    active: false,
                    success: true,
                    expected_total: Some(expected),
                    responded_total: Some(responded as i32),
                    contributed_total: responded as i32,
                    responded_percentage: Some(if expected <= 0 {
                        100.0
                    } else {
                        responded as f64 * 100.0 / f64::from(expected)
                    }),
                    start_cursor: None,
                },
            };
            (answer, pause)
        };
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        Ok(Some(answer))
    }

    #[graphql(name = "packageSpecs")]
    async fn package_specs(
        &self,
        ctx: &Context<'_>,
        after: Option<Cursor>,
        #[graphql(default_with = "twenty()")] first: Option<i32>,
        filter: Option<FieldFilter>,
    ) -> Result<Option<PackageSpecConnection>> {
        let f = filter.map(|f| f.to_filter()).transpose()?;
        let mut matched = Vec::new();
        for p in packages::CATALOG {
            if f.as_ref()
                .map(|f| filter::matches(f, p))
                .transpose()?
                .unwrap_or(true)
            {
                matched.push(p);
            }
        }
        let mut st = ctx.data::<Sim>()?.peek();
        let w = st.page(matched.len(), first, after.as_ref().map(|c| c.0.as_str()))?;
        Ok(Some(PackageSpecConnection {
            edges: w
                .range
                .clone()
                .map(|i| PackageSpecEdge {
                    node: PackageSpec::from(matched[i]),
                    cursor: Cursor(w.cursor(i)),
                })
                .collect(),
            page_info: PageInfo::of(&w),
            total_records: matched.len() as i32,
        }))
    }

    async fn sensors(
        &self,
        ctx: &Context<'_>,
        after: Option<Cursor>,
        #[graphql(default = 2000)] first: Option<i32>,
        filter: Option<FieldFilter>,
        #[graphql(name = "includeHidden", default)] _include_hidden: bool,
    ) -> Result<Option<SensorConnection>> {
        let f = filter.map(|f| f.to_filter()).transpose()?;
        let mut st = ctx.data::<Sim>()?.peek();
        let modes = st.sources;
        let mut matched = Vec::new();
        for s in sensors::catalog(modes.tds_registered_only) {
            if f.as_ref()
                .map(|f| filter::matches(f, &s))
                .transpose()?
                .unwrap_or(true)
            {
                matched.push(s);
            }
        }
        // How old a cached reading may be: the sim's TDS refresh bound, or Tanium's default of ten minutes.
        let max_age = match modes.tds_max_age_ms {
            0 => 600,
            ms => ms.div_ceil(1000).min(i32::MAX as u64) as i32,
        };
        let w = st.page(matched.len(), first, after.as_ref().map(|c| c.0.as_str()))?;
        Ok(Some(SensorConnection {
            edges: w
                .range
                .clone()
                .map(|i| {
                    let s = &matched[i];
                    let column = |name: &str| SensorColumn {
                        name: name.to_string(),
                        ignore_case: true,
                        value_type: "String".into(),
                        hidden: false,
                    };
                    SensorEdge {
                        node: Sensor {
                            name: s.name.to_string(),
                            description: String::new(),
                            content_set_name: "Base".into(),
                            is_virtual: false,
                            columns: Some(
                                sensors::columns(s.name).into_iter().map(column).collect(),
                            ),
                            harvested: s.harvested,
                            // The sim's sensors take no parameters.
                            parameterizations: Some(Vec::new()),
                            category: s.category().into(),
                            max_age_seconds: Some(max_age),
                            ignore_case: true,
                            value_type: "String".into(),
                            hidden: false,
                        },
                        cursor: Cursor(w.cursor(i)),
                    }
                })
                .collect(),
            page_info: PageInfo::of(&w),
            total_records: matched.len() as i32,
        }))
    }

    #[graphql(name = "directConnectEndpoint", visible = "super::newer")]
    async fn direct_connect_endpoint(
        &self,
        ctx: &Context<'_>,
        input: DirectConnectEndpointInput,
    ) -> Result<Option<DirectConnect>> {
        if !super::newer(ctx) {
            return Err(super::absent("directConnectEndpoint", "Query"));
        }
        let mut st = ctx.data::<Sim>()?.peek();
        let ep = st.dc_use(&input.connection_id)?;
        Ok(st.endpoint(&ep).map(|e| DirectConnect(e.spec.clone())))
    }

    #[graphql(name = "directConnectConnectionStatus", visible = "super::newer")]
    async fn direct_connect_connection_status(
        &self,
        ctx: &Context<'_>,
        input: DirectConnectConnectionStatusInput,
    ) -> Result<DirectConnectConnectionStatusPayload> {
        if !super::newer(ctx) {
            return Err(super::absent("directConnectConnectionStatus", "Query"));
        }
        let mut st = ctx.data::<Sim>()?.peek();
        Ok(DirectConnectConnectionStatusPayload {
            status: st.dc_status(&input.connection_id).into(),
        })
    }

    #[graphql(name = "directEndpoint")]
    async fn direct_endpoint(
        &self,
        ctx: &Context<'_>,
        input: OpenDirectConnectionInput,
    ) -> Result<Option<DirectConnect>> {
        let id = input.endpoint_id.ok_or("endpointID is required")?;
        let mut st = ctx.data::<Sim>()?.peek();
        let ep = st.dc_use_endpoint(&id)?;
        Ok(st.endpoint(&ep).map(|e| DirectConnect(e.spec.clone())))
    }
}
