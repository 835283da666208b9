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

/// Every sensor the sim answers, as the `sensors` query lists them.
pub(crate) const ALL: [&str; 5] = [
    COMPUTER_NAME,
    OS_PLATFORM,
    IP_ADDRESS,
    CUSTOM_TAGS,
    PROCESSES_MD5,
];

/// Registered for collection by the Tanium Data Service, as on a server with default content: the process
/// table changes by the second and costs every endpoint to collect, so it is asked live.
pub(crate) fn harvested(sensor: &str) -> bool {
    canonical(sensor) != Some(PROCESSES_MD5)
}

/// The column names a sensor's readings have.
pub(crate) fn columns(sensor: &str) -> Vec<&'static str> {
    match canonical(sensor) {
        Some(PROCESSES_MD5) => vec!["Name", "MD5 Hash"],
        Some(s) => vec![s],
        None => Vec::new(),
    }
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
            columns(PROCESSES_MD5),
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

/// An endpoint as the Tanium Data Service sees it: its collected readings, and none at all of a sensor that is not
/// registered for collection when TDS holds only those.
pub(crate) struct Collected<'a> {
    pub spec: &'a EndpointSpec,
    pub registered_only: bool,
}

impl Subject for Collected<'_> {
    fn values(&self, target: &Target) -> Result<Vec<String>, FilterError> {
        match target {
            Target::Sensor { name, .. } if self.registered_only && !harvested(name) => {
                // Still an error for a sensor nobody knows, as the live answer would give.
                canonical(name).ok_or_else(|| FilterError::UnknownSensor(name.clone()))?;
                Ok(Vec::new())
            }
            _ => self.spec.values(target),
        }
    }

    fn member_of(&self, group: &GroupRef) -> Result<bool, FilterError> {
        self.spec.member_of(group)
    }
}

/// A sensor as the `sensors` query lists it; a `FieldFilter` reads its `name`, `harvested` and `category`.
pub(crate) struct Listed {
    pub name: &'static str,
    pub harvested: bool,
}

/// The catalog as a Gateway with these source modes reports it: every sensor collected unless TDS holds only the
/// registered ones.
pub(crate) fn catalog(registered_only: bool) -> Vec<Listed> {
    ALL.into_iter()
        .map(|name| Listed {
            name,
            harvested: !registered_only || harvested(name),
        })
        .collect()
}

impl Listed {
    pub(crate) fn category(&self) -> &'static str {
        if self.name == PROCESSES_MD5 {
            "Processes"
        } else {
            "Identification"
        }
    }
}

impl Subject for Listed {
    fn values(&self, target: &Target) -> Result<Vec<String>, FilterError> {
        match target {
            Target::Path(p) => match p.as_str() {
                "name" => Ok(vec![self.name.to_string()]),
                "harvested" => Ok(vec![self.harvested.to_string()]),
                "category" => Ok(vec![self.category().to_string()]),
                _ => Err(FilterError::UnknownPath(p.clone())),
            },
            Target::Sensor { name, .. } => Err(FilterError::UnknownSensor(name.clone())),
        }
    }
}
