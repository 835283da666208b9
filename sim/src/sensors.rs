//! Sensors the sim answers, and how an endpoint is seen by filters.

use crate::filter::{FilterError, GroupRef, Subject, Target};
use crate::fleet::EndpointSpec;
use crate::groups;

pub(crate) const COMPUTER_NAME: &str = "Computer Name";
pub(crate) const OS_PLATFORM: &str = "OS Platform";
pub(crate) const IP_ADDRESS: &str = "IP Address";
pub(crate) const CUSTOM_TAGS: &str = "Custom Tags";
pub(crate) const PROCESSES_MD5: &str = "Running Processes with MD5 Hash";

/// A sensor's reading on one endpoint: column names and rows (one value per column).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reading {
    pub sensor: &'static str,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

fn canonical(name: &str) -> Option<&'static str> {
    [
        COMPUTER_NAME,
        OS_PLATFORM,
        IP_ADDRESS,
        CUSTOM_TAGS,
        PROCESSES_MD5,
    ]
    .into_iter()
    .find(|s| s.eq_ignore_ascii_case(name.trim()))
}

pub(crate) fn read(ep: &EndpointSpec, sensor: &str) -> Result<Reading, FilterError> {
    let sensor = canonical(sensor).ok_or_else(|| FilterError::UnknownSensor(sensor.to_string()))?;
    let single = |v: &str| vec![vec![v.to_string()]];
    let (columns, rows) = match sensor {
        COMPUTER_NAME => (vec![COMPUTER_NAME], single(&ep.name)),
        OS_PLATFORM => (vec![OS_PLATFORM], single(ep.platform.as_str())),
        IP_ADDRESS => (vec![IP_ADDRESS], single(&ep.ip)),
        CUSTOM_TAGS => (
            vec![CUSTOM_TAGS],
            ep.tags.iter().map(|t| vec![t.clone()]).collect(),
        ),
        _ => (
            vec!["Name", "MD5 Hash"],
            ep.processes
                .iter()
                .map(|p| vec![p.name.clone(), p.md5.clone()])
                .collect(),
        ),
    };
    Ok(Reading {
        sensor,
        columns,
        rows,
    })
}

impl Reading {
    pub(crate) fn column_index(&self, column: &str) -> Result<usize, FilterError> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(column.trim()))
            .ok_or_else(|| FilterError::UnknownColumn {
                sensor: self.sensor.to_string(),
                column: column.to_string(),
            })
    }
}

/// One row of a reading, for `SensorValueFilter` (its `column` is the path).
pub(crate) struct Row<'a> {
    pub reading: &'a Reading,
    pub row: &'a [String],
}

impl Subject for Row<'_> {
    fn values(&self, target: &Target) -> Result<Vec<String>, FilterError> {
        let column = match target {
            Target::Path(p) => p.as_str(),
            Target::Sensor { column, .. } => column.as_deref().unwrap_or(""),
        };
        if column.is_empty() {
            return Ok(self.row.to_vec());
        }
        let i = self.reading.column_index(column)?;
        Ok(self.row.get(i).cloned().into_iter().collect())
    }
}

impl Subject for EndpointSpec {
    fn values(&self, target: &Target) -> Result<Vec<String>, FilterError> {
        match target {
            Target::Path(path) => {
                let v = match path.as_str() {
                    "id" => self.id.clone(),
                    "name" | "computerName" => self.name.clone(),
                    "computerID" => self.computer_id(),
                    "ipAddress" => self.ip.clone(),
                    "os.platform" => self.platform.as_str().to_string(),
                    "os.name" => self.platform.os_name().to_string(),
                    "domainName" => String::new(),
                    "namespace" => String::new(),
                    _ => return Err(FilterError::UnknownPath(path.clone())),
                };
                Ok(vec![v])
            }
            Target::Sensor { name, column } => {
                let reading = read(self, name)?;
                match column.as_deref().filter(|c| !c.is_empty()) {
                    Some(c) => {
                        let i = reading.column_index(c)?;
                        Ok(reading
                            .rows
                            .into_iter()
                            .filter_map(|mut r| (i < r.len()).then(|| r.swap_remove(i)))
                            .collect())
                    }
                    None => Ok(reading.rows.into_iter().flatten().collect()),
                }
            }
        }
    }

    fn member_of(&self, group: &GroupRef) -> Result<bool, FilterError> {
        let g = groups::find_ref(group).ok_or_else(|| {
            FilterError::UnknownGroup(group.name.clone().or(group.id.clone()).unwrap_or_default())
        })?;
        Ok(g.contains(self.platform))
    }
}
