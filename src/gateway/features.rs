//! What this Gateway offers, so that older and newer Gateways are handled by capability, never by a version
//! string: which Direct Connect family it serves, whether it has the newer `actions` query, whether action
//! instances can be `CLOSED`. Detected once by `introspect`; the transport keeps it.

use serde::Serialize;

/// What was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Features {
    /// `directConnectOpen` and its family.
    pub direct_connect: bool,
    /// `openDirectConnection` and its family (the seed's calls).
    pub direct_connect_legacy: bool,
    /// `Query.actions` (newer Gateways).
    pub actions_query: bool,
    /// `ActionStatus.CLOSED` (newer Gateways).
    pub closed_status: bool,
}

impl Features {
    /// Each feature by its name (the label of `tanium_operator_gateway_feature`) and whether it is there.
    pub fn named(&self) -> [(&'static str, bool); 4] {
        [
            ("directConnect", self.direct_connect),
            ("directConnectLegacy", self.direct_connect_legacy),
            ("actionsQuery", self.actions_query),
            ("closedStatus", self.closed_status),
        ]
    }
}

impl std::fmt::Display for Features {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dc = match (self.direct_connect, self.direct_connect_legacy) {
            (true, true) => "current and older families (current used)",
            (true, false) => "current family only",
            (false, true) => "older family only (openDirectConnection …)",
            (false, false) => "none",
        };
        let yes = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "Direct Connect: {dc}; actions query: {}; CLOSED status: {}",
            yes(self.actions_query),
            yes(self.closed_status)
        )
    }
}
