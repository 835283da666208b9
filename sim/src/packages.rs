//! The package catalog `packageSpecs` serves and `actionPerform` deploys.

use crate::filter::{FilterError, Subject, Target};
use crate::fleet::Platform;

pub(crate) const ADD_TAGS: &str = "Custom Tagging - Add Tags";
pub(crate) const REMOVE_TAGS: &str = "Custom Tagging - Remove Tags";
pub(crate) const KILL_PROCESS: &str = "Kill Process - ||Running Processes with MD5 Hash_MD5 Hash||";
pub(crate) const KILL_PROCESS_PARAM: &str = "Running Processes with MD5 Hash_MD5 Hash";

/// What completing the package does to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    None,
    AddTags,
    RemoveTags,
    KillProcessByMd5,
}

#[derive(Debug, Clone)]
pub(crate) struct Package {
    pub id: &'static str,
    pub name: &'static str,
    pub content_set: &'static str,
    pub command: &'static str,
    pub expire_seconds: i64,
    pub command_timeout_seconds: i64,
    /// (key, label, default)
    pub params: &'static [(&'static str, &'static str, Option<&'static str>)],
    pub sensor_sourced: &'static [&'static str],
    pub platforms: &'static [Platform],
    pub effect: Effect,
}

const ALL: &[Platform] = &[Platform::Windows, Platform::Linux, Platform::Mac];

pub(crate) const CATALOG: &[Package] = &[
    Package {
        id: "101",
        name: ADD_TAGS,
        content_set: "Base",
        command: "cmd /c cscript //T:60 add-tags.vbs \"$1\"",
        expire_seconds: 600,
        command_timeout_seconds: 60,
        params: &[("$1", "Tags", None)],
        sensor_sourced: &[],
        platforms: ALL,
        effect: Effect::AddTags,
    },
    Package {
        id: "102",
        name: REMOVE_TAGS,
        content_set: "Base",
        command: "cmd /c cscript //T:60 remove-tags.vbs \"$1\"",
        expire_seconds: 600,
        command_timeout_seconds: 60,
        params: &[("$1", "Tags", None)],
        sensor_sourced: &[],
        platforms: ALL,
        effect: Effect::RemoveTags,
    },
    Package {
        id: "103",
        name: KILL_PROCESS,
        content_set: "Incident Response",
        command: "cmd /c cscript //T:120 kill-process.vbs \"||Running Processes with MD5 Hash_MD5 Hash||\"",
        expire_seconds: 600,
        command_timeout_seconds: 120,
        params: &[],
        sensor_sourced: &[KILL_PROCESS_PARAM],
        platforms: ALL,
        effect: Effect::KillProcessByMd5,
    },
    Package {
        id: "104",
        name: "Distribute Tanium Standard Utilities",
        content_set: "Base",
        command: "cmd /c cscript //T:300 install-utils.vbs",
        expire_seconds: 3600,
        command_timeout_seconds: 300,
        params: &[],
        sensor_sourced: &[],
        platforms: &[Platform::Windows],
        effect: Effect::None,
    },
    Package {
        id: "105",
        name: "Run Script",
        content_set: "Base",
        command: "cmd /c run-script.cmd \"$1\" \"$2\"",
        expire_seconds: 900,
        command_timeout_seconds: 90,
        params: &[("$1", "Script", None), ("$2", "Arguments", Some(""))],
        sensor_sourced: &[],
        platforms: ALL,
        effect: Effect::None,
    },
];

pub(crate) fn find(id: Option<&str>, name: Option<&str>) -> Option<&'static Package> {
    CATALOG
        .iter()
        .find(|p| id.is_some_and(|i| i == p.id) || name.is_some_and(|n| n == p.name))
}

/// Tanium's tagging packages take one parameter holding several tags.
pub(crate) fn split_tags(param: &str) -> Vec<String> {
    param
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

impl Subject for Package {
    fn values(&self, target: &Target) -> Result<Vec<String>, FilterError> {
        match target {
            Target::Path(p) => match p.as_str() {
                "name" => Ok(vec![self.name.to_string()]),
                "id" => Ok(vec![self.id.to_string()]),
                "contentSetName" | "contentSet.name" => Ok(vec![self.content_set.to_string()]),
                "command" => Ok(vec![self.command.to_string()]),
                _ => Err(FilterError::UnknownPath(p.clone())),
            },
            Target::Sensor { name, .. } => Err(FilterError::UnknownSensor(name.clone())),
        }
    }
}
