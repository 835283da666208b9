//! The computer groups (for `memberOf` and target groups) and action groups the sim knows.

use crate::filter::GroupRef;
use crate::fleet::Platform;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Group {
    pub id: &'static str,
    pub name: &'static str,
    /// `None` means every endpoint.
    pub platform: Option<Platform>,
}

/// Action groups and computer groups share these definitions and ids, as a fresh Tanium does for
/// its default groups.
pub(crate) const GROUPS: &[Group] = &[
    Group {
        id: "1",
        name: "All Computers",
        platform: None,
    },
    Group {
        id: "2",
        name: "All Windows",
        platform: Some(Platform::Windows),
    },
    Group {
        id: "3",
        name: "All Linux",
        platform: Some(Platform::Linux),
    },
    Group {
        id: "4",
        name: "All Mac",
        platform: Some(Platform::Mac),
    },
];

pub(crate) fn find(id: Option<&str>, name: Option<&str>) -> Option<&'static Group> {
    GROUPS.iter().find(|g| {
        id.is_some_and(|i| i == g.id) || name.is_some_and(|n| n.eq_ignore_ascii_case(g.name))
    })
}

pub(crate) fn find_ref(r: &GroupRef) -> Option<&'static Group> {
    find(r.id.as_deref(), r.name.as_deref())
}

impl Group {
    pub(crate) fn contains(&self, platform: Platform) -> bool {
        self.platform.is_none_or(|p| p == platform)
    }
}
