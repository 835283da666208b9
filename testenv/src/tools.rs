//! The test tools beside the control plane: `kstatus`, `promtool` and `helm-docs`, which `scripts/test-tools.sh`
//! builds into `${XDG_CACHE_HOME:-~/.cache}/tanium-operator/test-tools/` and `scripts/test` exports as
//! `TANIUM_KSTATUS`, `TANIUM_PROMTOOL` and `TANIUM_HELM_DOCS`; and `helm`, beside the Kubernetes binaries. A test
//! that needs one skips loudly without it, or fails when [`crate::control_plane_required`] (CI), as a test that
//! needs the control plane does.

use std::io::Write as _;
use std::path::PathBuf;

use crate::binaries::{cache_root, is_executable};
use crate::{Binaries, Error, control_plane_required};

/// A tool `scripts/test-tools.sh` builds, and the variable that names its executable.
#[derive(Debug, Clone, Copy)]
pub struct TestTool {
    /// Its file name in [`test_tools_dir`].
    pub name: &'static str,
    /// The environment variable holding its path (`scripts/test` sets it).
    pub env: &'static str,
}

impl TestTool {
    /// The kstatus verdict of objects (`tools/kstatus/`).
    pub const KSTATUS: TestTool = TestTool {
        name: "kstatus",
        env: "TANIUM_KSTATUS",
    };
    /// Prometheus' promtool (`check rules`, `test rules`).
    pub const PROMTOOL: TestTool = TestTool {
        name: "promtool",
        env: "TANIUM_PROMTOOL",
    };
    /// helm-docs, which writes the chart's README from its values (`scripts/chart-readme`).
    pub const HELM_DOCS: TestTool = TestTool {
        name: "helm-docs",
        env: "TANIUM_HELM_DOCS",
    };

    /// `$<env>` if set, else the tool in [`test_tools_dir`]; [`Error::ToolNotFound`] says where it looked.
    pub fn locate(&self) -> Result<PathBuf, Error> {
        let missing = |detail: String| Error::ToolNotFound {
            tool: self.name,
            env: self.env,
            detail,
        };
        let path = match std::env::var_os(self.env).filter(|v| !v.is_empty()) {
            Some(path) => PathBuf::from(path),
            None => test_tools_dir()
                .ok_or_else(|| {
                    missing(format!(
                        "{} is unset and neither XDG_CACHE_HOME nor HOME is set",
                        self.env
                    ))
                })?
                .join(self.name),
        };
        if is_executable(&path) {
            Ok(path)
        } else {
            Err(missing(format!("no executable {}", path.display())))
        }
    }

    /// [`Self::locate`], or `None` after a loud `SKIPPED` line; panics instead when
    /// [`control_plane_required`] (`CI=true`, `TANIUM_REQUIRE_K8S=1`).
    pub fn locate_or_skip(&self) -> Option<PathBuf> {
        self.locate().map_or_else(|e| skip(self.name, &e), Some)
    }
}

/// Where `scripts/test-tools.sh` builds: `${XDG_CACHE_HOME:-$HOME/.cache}/tanium-operator/test-tools`.
pub fn test_tools_dir() -> Option<PathBuf> {
    Some(cache_root()?.join("test-tools"))
}

/// The pinned `helm` beside the Kubernetes binaries ([`Binaries::locate`]), for a test that needs helm but no
/// control plane; `None` after a loud `SKIPPED` line (a panic in CI) when it is missing.
pub fn helm_or_skip() -> Option<PathBuf> {
    let located = Binaries::locate().and_then(|b| {
        b.helm().ok_or_else(|| Error::BinaryNotFound {
            binary: "helm",
            detail: format!("no executable helm in {}", b.dir.display()),
        })
    });
    located.map_or_else(|e| skip("helm", &e), Some)
}

/// A missing dependency: skipped loudly, or (CI) a failure.
fn skip<T>(what: &str, e: &Error) -> Option<T> {
    assert!(
        !control_plane_required(),
        "{what} is required here (CI=true or TANIUM_REQUIRE_K8S=1) but {e}"
    );
    // Straight to the stderr file descriptor: the test harness captures eprintln!.
    let _ = writeln!(
        std::io::stderr(),
        "\n==== SKIPPED: this test needs {what}: {e}\n==== (./scripts/test provides it; with CI=true or \
         TANIUM_REQUIRE_K8S=1 this is a failure, not a skip)\n"
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_the_script_and_the_variable() {
        let tool = TestTool {
            name: "no-such-tool",
            env: "TANIUM_TESTENV_NO_SUCH_TOOL",
        };
        let err = tool.locate().expect_err("missing");
        assert!(err.is_binary_missing());
        let said = err.to_string();
        assert!(
            said.contains("./scripts/test-tools.sh")
                && said.contains("TANIUM_TESTENV_NO_SUCH_TOOL"),
            "{said}"
        );
    }

    /// The tools the library knows are the ones the script builds.
    #[test]
    fn tools_match_the_script() {
        let script = include_str!("../../scripts/test-tools.sh");
        for tool in [TestTool::KSTATUS, TestTool::PROMTOOL, TestTool::HELM_DOCS] {
            assert!(
                script.contains(&format!("build_{}()", tool.name.replace('-', "_"))),
                "{tool:?}"
            );
            let exports = include_str!("../../scripts/test");
            assert!(exports.contains(&format!("{}=", tool.env)), "{tool:?}");
        }
    }
}
