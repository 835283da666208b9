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
    ScheduledActionConnection, ScheduledActionEdge,
};
use super::scalars::{Cursor, Time};
use crate::faults::ReadFault;
use crate::filter;
use crate::groups;
use crate::packages;
use crate::state::Sim;

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
        let mut st = ctx.data::<Sim>()?.peek();
        let mut matched = Vec::new();
        for (i, ep) in st.endpoints.iter().enumerate() {
            if f.as_ref()
                .map(|f| filter::matches(f, &ep.spec))
                .transpose()?
                .unwrap_or(true)
            {
                matched.push(i);
            }
        }
        let online = matched
            .iter()
            .filter(|i| st.endpoints[**i].spec.online)
            .count();
        let w = st.page(matched.len(), first, after.as_ref().map(|c| c.0.as_str()))?;
        let edges = w
            .range
            .clone()
            .map(|i| EndpointEdge {
                node: Endpoint(st.endpoints[matched[i]].spec.clone()),
                cursor: Cursor(w.cursor(i)),
            })
            .collect();
        // A live (ts) question is answered by the online endpoints; cached data by all of them.
        let live = source.as_ref().and_then(|s| s.ts.as_ref());
        let responded = if live.is_some() {
            online
        } else {
            matched.len()
        };
        let expected = live
            .and_then(|t| t.expected_count)
            .unwrap_or(matched.len() as i32);
        Ok(Some(EndpointConnection {
            edges,
            page_info: PageInfo::of(&w),
            total_records: matched.len() as i32,
            collection_info: EndpointCollectionInfo {
                active: false,
                success: true,
                expected_total: Some(expected),
                responded_total: Some(responded as i32),
                contributed_total: responded as i32,
                responded_percentage: Some(if matched.is_empty() {
                    100.0
                } else {
                    responded as f64 * 100.0 / matched.len() as f64
                }),
                start_cursor: None,
            },
        }))
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
