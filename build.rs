//! Tells the operator which compiler built it (`tanium_operator_build_info{rustc}`): the version `$RUSTC -V` prints (cargo
//! always sets RUSTC), so a clean build cannot fail here; if it cannot be run, the label is left out.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    if let Ok(out) = std::process::Command::new(rustc).arg("-V").output()
        && out.status.success()
    {
        // "rustc 1.95.0 (59807616e 2026-04-14)": the version is the second word.
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(version) = text.split_whitespace().nth(1) {
            println!("cargo:rustc-env=TANIUM_RUSTC_VERSION={version}");
        }
    }
}
