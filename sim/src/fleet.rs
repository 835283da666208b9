//! The simulated fleet: endpoint descriptions, the fixtures every generated fleet contains, and
//! the deterministic generator.

use std::path::Path;

use jiff::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::SimError;
use crate::det;

/// MD5 of the OpenSSH server binary that the seed's "Kill OpenSSH" example targets.
pub const SSHD_MD5: &str = "4bf0d5083604b3f8c67c6d0dd310e355";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, async_graphql::Enum)]
#[graphql(name = "EndpointPlatform")]
pub enum Platform {
    #[graphql(name = "Unknown")]
    Unknown,
    #[graphql(name = "Windows")]
    Windows,
    #[graphql(name = "Linux")]
    Linux,
    #[graphql(name = "Mac")]
    Mac,
    #[graphql(name = "Solaris")]
    Solaris,
    #[graphql(name = "AIX")]
    #[serde(rename = "AIX")]
    Aix,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Unknown => "Unknown",
            Platform::Windows => "Windows",
            Platform::Linux => "Linux",
            Platform::Mac => "Mac",
            Platform::Solaris => "Solaris",
            Platform::Aix => "AIX",
        }
    }

    pub(crate) fn os_name(self) -> &'static str {
        match self {
            Platform::Windows => "Windows Server 2019 Standard",
            Platform::Linux => "Ubuntu 22.04.3 LTS",
            Platform::Mac => "macOS 14.2",
            Platform::Solaris => "Solaris 11.4",
            Platform::Aix => "AIX 7.2",
            Platform::Unknown => "Unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessSpec {
    pub name: String,
    pub pid: i64,
    #[serde(default)]
    pub ppid: i64,
    #[serde(default)]
    pub md5: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub command_line: String,
    /// Resident memory in bytes.
    #[serde(default)]
    pub memory: i64,
    #[serde(default)]
    pub cpu_percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSpec {
    #[serde(default = "one")]
    pub schema: i32,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub labels: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub pending_at: Option<Timestamp>,
    #[serde(default)]
    pub start: Option<Timestamp>,
    #[serde(default)]
    pub resolved_at: Option<Timestamp>,
    /// Nanoseconds, as the Gateway reports it.
    #[serde(default)]
    pub leadup: Option<i64>,
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub firing: Option<bool>,
}

fn one() -> i32 {
    1
}

fn yes() -> bool {
    true
}

/// One endpoint as a fleet file describes it and as [`crate::Sim::endpoint`] reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointSpec {
    /// Numeric string; empty means "assign one" when added.
    #[serde(default)]
    pub id: String,
    pub name: String,
    pub platform: Platform,
    #[serde(default)]
    pub ip: String,
    #[serde(default = "yes")]
    pub online: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub processes: Vec<ProcessSpec>,
    #[serde(default)]
    pub cpu_percent: f64,
    #[serde(default)]
    pub memory_percent: f64,
    #[serde(default)]
    pub alerts: Vec<AlertSpec>,
}

impl EndpointSpec {
    pub fn new(name: impl Into<String>, platform: Platform) -> Self {
        Self {
            id: String::new(),
            name: name.into(),
            platform,
            ip: String::new(),
            online: true,
            tags: Vec::new(),
            processes: Vec::new(),
            cpu_percent: 5.0,
            memory_percent: 40.0,
            alerts: Vec::new(),
        }
    }

    /// Tanium's computer id differs from the Gateway's endpoint id; derive a stable one.
    pub(crate) fn computer_id(&self) -> String {
        (det::hash_str(&self.id) % 4_000_000_000).to_string()
    }
}

pub(crate) fn load_file(path: &Path) -> Result<Vec<EndpointSpec>, SimError> {
    let text = std::fs::read_to_string(path).map_err(|e| SimError::Fleet {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| SimError::Fleet {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

// Positional on purpose: the fixtures below read as a process table.
#[allow(clippy::too_many_arguments)]
fn proc(
    name: &str,
    pid: i64,
    ppid: i64,
    md5: &str,
    user: &str,
    group: &str,
    cmd: &str,
    mem: i64,
) -> ProcessSpec {
    ProcessSpec {
        name: name.into(),
        pid,
        ppid,
        md5: md5.into(),
        user: user.into(),
        group: group.into(),
        command_line: cmd.into(),
        memory: mem,
        cpu_percent: 0.5,
    }
}

fn windows_base(rng: &mut StdRng) -> Vec<ProcessSpec> {
    vec![
        proc(
            "System",
            4,
            0,
            "",
            "SYSTEM",
            "NT AUTHORITY",
            "System",
            145_408,
        ),
        proc(
            "svchost.exe",
            rng.random_range(600..900),
            4,
            "8a0a29438052faed8a2532da50455756",
            "SYSTEM",
            "NT AUTHORITY",
            "C:\\Windows\\system32\\svchost.exe -k netsvcs",
            24_000_000,
        ),
        proc(
            "TaniumClient.exe",
            rng.random_range(1000..6000),
            1112,
            "5b3c1f8e0a9d4e7f6c2b1a0d9e8f7a6b",
            "SYSTEM",
            "NT AUTHORITY",
            "\"C:\\Program Files (x86)\\Tanium\\Tanium Client\\TaniumClient.exe\" -c",
            17_965_056,
        ),
        proc(
            "explorer.exe",
            rng.random_range(6000..9000),
            3000,
            "e4a81eddff8b844d85c8b45354e9144a",
            "user",
            "DOMAIN",
            "C:\\Windows\\explorer.exe",
            90_000_000,
        ),
    ]
}

fn unix_base(rng: &mut StdRng, platform: Platform) -> Vec<ProcessSpec> {
    let client = if platform == Platform::Mac {
        "/Library/Tanium/TaniumClient/TaniumClient"
    } else {
        "/opt/Tanium/TaniumClient/TaniumClient"
    };
    vec![
        proc(
            if platform == Platform::Mac {
                "launchd"
            } else {
                "systemd"
            },
            1,
            0,
            "d41d8cd98f00b204e9800998ecf8427e",
            "root",
            "root",
            "/sbin/init",
            12_000_000,
        ),
        proc(
            "TaniumClient",
            rng.random_range(500..3000),
            1,
            "7c9e6679f2f1a4c0b9d8e7f6a5b4c3d2",
            "root",
            "root",
            client,
            30_000_000,
        ),
        proc(
            "sshd",
            rng.random_range(300..900),
            1,
            "2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c",
            "root",
            "root",
            "/usr/sbin/sshd -D",
            8_000_000,
        ),
    ]
}

fn sshd_windows(pid: i64) -> ProcessSpec {
    proc(
        "sshd.exe",
        pid,
        700,
        SSHD_MD5,
        "SYSTEM",
        "NT AUTHORITY",
        "C:\\Windows\\System32\\OpenSSH\\sshd.exe",
        6_500_000,
    )
}

/// Fixtures the seeds' examples refer to by id or name; present in every generated fleet.
pub(crate) fn fixtures() -> Vec<EndpointSpec> {
    let mut server = EndpointSpec::new("tanium-server-01", Platform::Windows);
    server.id = "12323".into();
    server.ip = "10.0.12.23".into();
    server.cpu_percent = 28.751501243887798;
    server.memory_percent = 71.5;
    server.processes = vec![
        proc(
            "TaniumReceiver.exe",
            2092,
            496,
            "0f3a2b1c4d5e6f708192a3b4c5d6e7f8",
            "admin",
            "test-group",
            "\"C:\\Program Files\\Tanium\\Tanium Server\\TaniumReceiver.exe\" --service",
            59_842_560,
        ),
        proc(
            "TaniumClient.exe",
            5760,
            1112,
            "5b3c1f8e0a9d4e7f6c2b1a0d9e8f7a6b",
            "SYSTEM",
            "NT AUTHORITY",
            "\"C:\\Program Files (x86)\\Tanium\\Tanium Client\\TaniumClient.exe\" -c",
            17_965_056,
        ),
        proc(
            "TaniumBlobService.exe",
            1036,
            496,
            "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b",
            "SYSTEM",
            "NT AUTHORITY",
            "\"C:\\Program Files\\Tanium\\Tanium Module Server\\services\\blob-service\\TaniumBlobService.exe\"",
            7_426_048,
        ),
        proc(
            "notepad.exe",
            7056,
            4120,
            "f2c7bb8acc97f92e987a2d4087d021b1",
            "admin",
            "test-group",
            "\"C:\\Windows\\system32\\notepad.exe\"",
            4_300_800,
        ),
        sshd_windows(3344),
    ];
    let start: Option<Timestamp> = "2022-03-15T15:54:38.574990164Z".parse().ok();
    let mut labels = serde_json::Map::new();
    labels.insert(
        "heuristic".into(),
        serde_json::Value::String("available-mem".into()),
    );
    server.alerts = vec![AlertSpec {
        schema: 1,
        key: Some("available-mem{heuristic=\"available-mem\"}".into()),
        kind: Some("available-mem".into()),
        labels,
        pending_at: start,
        start,
        resolved_at: None,
        leadup: Some(300_000_000_000),
        value: Some(168.48828125),
        firing: Some(true),
    }];

    let mut test = EndpointSpec::new("testmachine999", Platform::Windows);
    test.id = "274177".into();
    test.ip = "10.0.27.177".into();
    test.processes = vec![
        proc(
            "System",
            4,
            0,
            "",
            "SYSTEM",
            "NT AUTHORITY",
            "System",
            145_408,
        ),
        proc(
            "TaniumClient.exe",
            2210,
            1112,
            "5b3c1f8e0a9d4e7f6c2b1a0d9e8f7a6b",
            "SYSTEM",
            "NT AUTHORITY",
            "\"C:\\Program Files (x86)\\Tanium\\Tanium Client\\TaniumClient.exe\" -c",
            17_965_056,
        ),
    ];

    let mut lin = EndpointSpec::new("workstation-54321", Platform::Linux);
    lin.id = "54321".into();
    lin.ip = "10.0.54.32".into();
    lin.processes = unix_base(&mut StdRng::seed_from_u64(54321), Platform::Linux);

    let mut mac = EndpointSpec::new("workstation-21212", Platform::Mac);
    mac.id = "21212".into();
    mac.ip = "10.0.21.212".into();
    mac.processes = unix_base(&mut StdRng::seed_from_u64(21212), Platform::Mac);

    vec![server, lin, mac, test]
}

const TAG_POOL: &[&str] = &[
    "Production",
    "Staging",
    "PCI",
    "DMZ",
    "Finance",
    "Engineering",
];

/// `size` endpoints in total, the fixtures first; generated ids start at 1000001.
pub fn generate(size: usize, seed: u64) -> Vec<EndpointSpec> {
    let mut out = fixtures();
    out.truncate(size.max(out.len()));
    let mut rng = StdRng::seed_from_u64(seed);
    let generated = size.saturating_sub(out.len());
    for i in 0..generated {
        let roll: f64 = rng.random();
        let platform = if roll < 0.6 {
            Platform::Windows
        } else if roll < 0.9 {
            Platform::Linux
        } else {
            Platform::Mac
        };
        let mut ep = EndpointSpec::new(format!("host-{:06}", i + 1), platform);
        ep.id = (1_000_001 + i as u64).to_string();
        ep.ip = format!(
            "10.{}.{}.{}",
            rng.random_range(1..255u8),
            rng.random_range(0..255u8),
            rng.random_range(1..255u8)
        );
        ep.online = rng.random_bool(0.95);
        ep.cpu_percent = (rng.random_range(0.5..95.0f64) * 100.0).round() / 100.0;
        ep.memory_percent = (rng.random_range(10.0..95.0f64) * 100.0).round() / 100.0;
        if rng.random_bool(0.2) {
            let n = rng.random_range(1..=2);
            for _ in 0..n {
                let tag = TAG_POOL[rng.random_range(0..TAG_POOL.len())].to_string();
                if !ep.tags.contains(&tag) {
                    ep.tags.push(tag);
                }
            }
        }
        ep.processes = match platform {
            Platform::Windows => {
                let mut p = windows_base(&mut rng);
                if rng.random_bool(0.15) {
                    p.push(sshd_windows(rng.random_range(2000..4000)));
                }
                p
            }
            other => unix_base(&mut rng, other),
        };
        out.push(ep);
    }
    out
}
