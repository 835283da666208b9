//! The krew manifest (`.krew.yaml`, a krew-release-bot template) has the shape krew-index accepts once the bot has
//! filled it in: rendered here the way the bot renders it, for this crate's version, and read back.

use serde_json::Value;

/// What krew-release-bot does at a tag: `{{ .TagName }}` is the tag, and `{{addURIAndSha "<url>" .TagName }}`
/// becomes the archive's `uri` and `sha256` lines (here a dummy digest: the archive exists only at release).
fn render(template: &str, tag: &str) -> String {
    let template = template.replace("{{ .TagName }}", tag);
    template
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            match trimmed
                .strip_prefix("{{addURIAndSha \"")
                .and_then(|rest| rest.split_once('"'))
            {
                Some((uri, _)) => {
                    let indent = &line[..line.len() - trimmed.len()];
                    format!("{indent}uri: {uri}\n{indent}sha256: {}", "0".repeat(64))
                }
                None => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_krew_manifest_renders_to_a_plugin_krew_accepts() {
    let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.krew.yaml"))
        .expect(".krew.yaml");
    let tag = format!("v{}", env!("CARGO_PKG_VERSION"));
    let plugin: Value = serde_yaml_ng::from_str(&render(&template, &tag)).expect("rendered YAML");
    assert_eq!(
        plugin["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(plugin["kind"], "Plugin");
    // `kubectl krew install tanium` installs `kubectl tanium`: the name is the command.
    assert_eq!(plugin["metadata"]["name"], "tanium");
    let spec = &plugin["spec"];
    assert_eq!(spec["version"], Value::from(tag.clone()));
    let homepage = spec["homepage"].as_str().expect("homepage");
    assert_eq!(
        homepage,
        env!("CARGO_PKG_REPOSITORY"),
        "one home, Cargo.toml's"
    );
    let short = spec["shortDescription"].as_str().expect("shortDescription");
    assert!(!short.is_empty() && short.len() <= 50, "{short}");
    assert!(
        !short.to_lowercase().contains("kubectl"),
        "krew: no 'kubectl' in it"
    );
    assert!(spec["description"].as_str().is_some_and(|d| d.len() > 50));
    let platforms = spec["platforms"].as_array().expect("platforms");
    let mut seen = Vec::new();
    for p in platforms {
        let labels = &p["selector"]["matchLabels"];
        let (os, arch) = (
            labels["os"].as_str().expect("os"),
            labels["arch"].as_str().expect("arch"),
        );
        seen.push(format!("{os}/{arch}"));
        assert_eq!(p["bin"], "kubectl-tanium", "{os}/{arch}");
        let uri = p["uri"].as_str().expect("uri");
        assert_eq!(
            uri,
            format!("{homepage}/releases/download/{tag}/kubectl-tanium_{tag}_{os}_{arch}.tar.gz")
        );
        let sha = p["sha256"].as_str().expect("sha256");
        assert!(
            sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()),
            "{sha}"
        );
    }
    seen.sort();
    assert_eq!(
        seen,
        ["darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64"]
    );
}
