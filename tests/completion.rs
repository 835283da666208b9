//! Both binaries print shell completion for their subcommands and flags.

fn completion(binary: &str, shell: &str) -> String {
    let out = std::process::Command::new(binary)
        .args(["completion", shell])
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{binary} completion {shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn both_binaries_complete_their_subcommands_in_each_shell() {
    for (binary, name, words) in [
        (
            env!("CARGO_BIN_EXE_tanium-operator"),
            "tanium-operator",
            &["run", "preview", "endpoints", "dec", "--gateway-url"][..],
        ),
        (
            env!("CARGO_BIN_EXE_kubectl-tanium"),
            "kubectl-tanium",
            &[
                "status",
                "approve",
                "--all-namespaces",
                "--kubeconfig",
                "--context",
            ][..],
        ),
    ] {
        for shell in ["bash", "zsh", "fish"] {
            let script = completion(binary, shell);
            assert!(script.contains(name), "{name} {shell}:\n{script}");
            for word in words {
                assert!(
                    script.contains(word.trim_start_matches('-')),
                    "{name} {shell} lacks {word}"
                );
            }
        }
    }
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-tanium"))
        .args(["completion", "tcsh"])
        .output()
        .expect("runs");
    assert_eq!(
        refused.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}
