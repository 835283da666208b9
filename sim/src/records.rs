//! What the sim's state holds of the actions it created and the Direct Connect sessions it opened: the records,
//! and what they say by themselves. The state (`state`) owns them; the operations on them (`actions`,
//! `direct_connect`) change them through it.

use jiff::{SignedDuration, Timestamp};

use crate::clock::add;
use crate::filter::Filter;
use crate::fleet::Platform;
use crate::groups::Group;
use crate::packages::Package;

#[derive(Debug, Clone, Default)]
pub(crate) struct ScheduleRequest {
    pub distribute_seconds: i64,
    pub expire_seconds: Option<i64>,
    pub reissue_seconds: Option<i64>,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub(crate) enum Selector {
    All,
    Group(&'static Group),
    Filter(Filter),
    Endpoints(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScheduledStatus {
    Enabled,
    Deleted,
}

#[derive(Debug, Clone)]
pub(crate) struct ScheduledAction {
    pub id: u64,
    pub name: String,
    pub comment: String,
    pub package: &'static Package,
    pub params: Vec<String>,
    pub sensor_params: Vec<(String, String)>,
    pub platform: Platform,
    pub action_group: &'static Group,
    pub target_group: (Option<String>, Option<String>),
    pub selector: Selector,
    pub platforms: Option<Vec<Platform>>,
    pub schedule: ScheduleRequest,
    pub creator: String,
    /// Wall-clock creation, for an index that lags behind (`ListingModes::name_filter_lag_ms`).
    pub created_wall: std::time::Instant,
    pub approver: Option<String>,
    pub approved: bool,
    pub status: ScheduledStatus,
    /// Action instances, oldest first.
    pub actions: Vec<u64>,
    pub next_issue: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub endpoint: String,
    pub offset: SignedDuration,
    pub download: SignedDuration,
    pub run: SignedDuration,
    pub fails: bool,
    pub started: Option<Timestamp>,
    pub finished: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub(crate) struct Action {
    pub id: u64,
    pub scheduled: u64,
    pub created: Timestamp,
    /// `None` while the scheduled action awaits approval.
    pub start: Option<Timestamp>,
    pub expiration: Option<Timestamp>,
    pub targets: Vec<Target>,
    pub stopped_at: Option<Timestamp>,
    /// Expired or stopped: nothing about it changes any more.
    pub settled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Open,
    Pending,
    Stopped,
    Expired,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub waiting: i32,
    pub downloading: i32,
    pub running: i32,
    pub completed: i32,
    pub expired: i32,
    pub failed: i32,
}

impl Counts {
    #[cfg(test)]
    pub(crate) fn total(&self) -> i32 {
        self.waiting + self.downloading + self.running + self.completed + self.expired + self.failed
    }
}

impl Action {
    pub(crate) fn status(&self, now: Timestamp) -> Status {
        let expired_at = |t: Timestamp| self.expiration.is_some_and(|e| e <= t);
        match (self.start, self.stopped_at) {
            (_, Some(stop)) if expired_at(stop) => Status::Expired,
            (_, Some(_)) => Status::Stopped,
            (None, None) => Status::Pending,
            (Some(_), None) if expired_at(now) => Status::Expired,
            _ => Status::Open,
        }
    }

    /// Per-endpoint states summed, as of `now` (or of the stop, for a stopped action).
    pub(crate) fn counts(&self, now: Timestamp) -> Counts {
        let t = self.stopped_at.unwrap_or(now);
        let expired = self.expiration.is_some_and(|e| e <= t);
        let mut c = Counts::default();
        for tg in &self.targets {
            match (tg.started, tg.finished) {
                (_, Some(f)) if f <= t => {
                    if tg.fails {
                        c.failed += 1
                    } else {
                        c.completed += 1
                    }
                }
                _ if expired => c.expired += 1,
                (Some(s), _) if s <= t => {
                    if t < add(s, tg.download) {
                        c.downloading += 1
                    } else {
                        c.running += 1
                    }
                }
                _ => c.waiting += 1,
            }
        }
        c
    }
}

impl ScheduledAction {
    pub(crate) fn expire_after(&self) -> SignedDuration {
        let s = self
            .schedule
            .expire_seconds
            .unwrap_or(self.package.expire_seconds + self.package.command_timeout_seconds);
        SignedDuration::from_secs(s.max(1))
    }

    /// When the first instance starts, once approved.
    pub(crate) fn base_start(&self, approved_at: Timestamp) -> Timestamp {
        match self.schedule.start_time {
            Some(s) if s > approved_at => s,
            _ => approved_at,
        }
    }

    pub(crate) fn reissue(&self) -> Option<SignedDuration> {
        match (self.schedule.reissue_seconds, self.schedule.end_time) {
            (Some(r), Some(_)) if r > 0 => Some(SignedDuration::from_secs(r)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnKind {
    Live,
    /// The endpoint was offline when opened.
    Error,
    /// The endpoint id was unknown when opened.
    NotFound,
}

#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub endpoint: String,
    pub ready_at: Timestamp,
    pub last_used: Timestamp,
    pub kind: ConnKind,
}
