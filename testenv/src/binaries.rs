//! Where etcd and kube-apiserver come from (the envtest convention, see `scripts/k8s-test-bins.sh`).

use std::path::{Path, PathBuf};

use crate::Error;

/// The Kubernetes version of the test binaries (the pin in `scripts/k8s-test-bins.sh`).
pub const K8S_VERSION: &str = "v1.36.3";
/// The etcd version of the test binaries.
pub const ETCD_VERSION: &str = "v3.6.5";
/// The helm version of the test binaries.
pub const HELM_VERSION: &str = "v3.19.0";

/// The directory `scripts/k8s-test-bins.sh` builds into:
/// `${XDG_CACHE_HOME:-$HOME/.cache}/tanium-operator/k8s-<K8S_VERSION>`.
pub fn default_cache_dir() -> Option<PathBuf> {
    Some(cache_root()?.join(format!("k8s-{K8S_VERSION}")))
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/tanium-operator`: where the scripts build what the tests run.
pub(crate) fn cache_root() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(xdg) => PathBuf::from(xdg),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache"),
    };
    Some(base.join("tanium-operator"))
}

/// The etcd and kube-apiserver executables a [`crate::ControlPlane`] runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The directory holding them (with kubectl and helm, when the script made it).
    pub dir: PathBuf,
    /// `kube-apiserver`.
    pub kube_apiserver: PathBuf,
    /// `etcd`.
    pub etcd: PathBuf,
}

impl Binaries {
    /// `$KUBEBUILDER_ASSETS` if set, else [`default_cache_dir`]; [`Error::BinaryNotFound`] names what is missing.
    pub fn locate() -> Result<Self, Error> {
        if let Some(dir) = std::env::var_os("KUBEBUILDER_ASSETS").filter(|v| !v.is_empty()) {
            return Self::in_dir(Path::new(&dir), "KUBEBUILDER_ASSETS");
        }
        let Some(dir) = default_cache_dir() else {
            return Err(Error::BinaryNotFound {
                binary: "kube-apiserver",
                detail: "KUBEBUILDER_ASSETS is unset and neither XDG_CACHE_HOME nor HOME is set"
                    .into(),
            });
        };
        Self::in_dir(&dir, "the binaries cache")
    }

    /// The binaries in `dir`; `what` names the directory in errors.
    pub fn in_dir(dir: &Path, what: &str) -> Result<Self, Error> {
        let find = |binary: &'static str| -> Result<PathBuf, Error> {
            let path = dir.join(binary);
            if is_executable(&path) {
                Ok(path)
            } else {
                Err(Error::BinaryNotFound {
                    binary,
                    detail: format!("no executable {} in {what}", path.display()),
                })
            }
        };
        Ok(Binaries {
            kube_apiserver: find("kube-apiserver")?,
            etcd: find("etcd")?,
            dir: dir.to_path_buf(),
        })
    }

    /// `kubectl` in the same directory, if there.
    pub fn kubectl(&self) -> Option<PathBuf> {
        Some(self.dir.join("kubectl")).filter(|p| is_executable(p))
    }

    /// `helm` in the same directory, if there.
    pub fn helm(&self) -> Option<PathBuf> {
        Some(self.dir.join("helm")).filter(|p| is_executable(p))
    }
}

pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Binaries::in_dir(dir.path(), "test dir").expect_err("empty dir");
        assert!(err.is_binary_missing());
        assert!(err.to_string().contains("kube-apiserver"), "{err}");
        assert!(
            err.to_string().contains("./scripts/k8s-test-bins.sh"),
            "{err}"
        );

        let api = dir.path().join("kube-apiserver");
        std::fs::write(&api, "#!/bin/sh\n").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&api, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = Binaries::in_dir(dir.path(), "test dir").expect_err("no etcd");
        assert!(err.to_string().starts_with("etcd not found"), "{err}");
    }
}
