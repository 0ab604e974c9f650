//! The deployment files are checked by the tools that will read them:
//! `systemd-analyze verify` for the unit, `kubernetes-validate` (offline
//! schemas) for the manifests, and `iocd check` for the configuration the
//! Kubernetes ConfigMap carries.

mod common;

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn systemd_unit_verifies() {
    if !common::installed("systemd-analyze", "systemd_unit_verifies") {
        return;
    }
    // verify checks that ExecStart exists: point it at the binary just built.
    let unit = std::fs::read_to_string(root().join("deploy/systemd/iocd.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/iocd run --config /etc/iocd/iocd.toml"));
    let dir = common::test_dir("systemd");
    let path = dir.join("iocd.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/iocd", env!("CARGO_BIN_EXE_iocd")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !said.contains("iocd.service"),
        "systemd-analyze verify: {said}"
    );
    // The exposure score systemd gives the unit: 2.0 or better.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let score: f64 = said
        .lines()
        .find_map(|l| l.split("iocd.service: ").nth(1))
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {said}"));
    assert!(score <= 2.0, "exposure {score}: {said}");
}

#[test]
fn kubernetes_manifests_validate_and_carry_a_valid_config() {
    let manifest = root().join("deploy/kubernetes/iocd.yaml");
    let sidecar = root().join("deploy/kubernetes/sidecar.yaml");
    let brokers = root().join("deploy/kubernetes/brokers.yaml");
    if common::installed("kubernetes-validate", "kubernetes_manifests_validate") {
        // 1.29: the first release with native sidecars (restartPolicy: Always).
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "-k", "1.29.0"])
            .arg(&manifest)
            .arg(&sidecar)
            .arg(&brokers)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The iocd.toml and the feed inside the ConfigMaps, as iocd will read them.
    let text = std::fs::read_to_string(&manifest).unwrap();
    let block = |key: &str| -> String {
        let start = text
            .find(&format!("  {key}: |\n"))
            .unwrap_or_else(|| panic!("{key} in the manifest"))
            + key.len()
            + 6;
        text[start..]
            .lines()
            .take_while(|l| l.starts_with("    ") || l.is_empty())
            .map(|l| l.get(4..).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let dir = common::test_dir("k8s");
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/local.txt"), block("local.txt")).unwrap();
    let config = block("iocd.toml")
        .replace("/etc/iocd/feeds", &dir.join("feeds").display().to_string())
        .replace("/var/lib/iocd", &dir.join("state").display().to_string());
    std::fs::write(dir.join("iocd.toml"), config).unwrap();
    let out = common::check(&dir.join("iocd.toml"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("feed local (plain; 1 file): 2 indicators")
    );
    // The sidecar's config, its URL feeds pointed at a local file (tests
    // reach no network) and its paths into the test's folder.
    let text = std::fs::read_to_string(&sidecar).unwrap();
    let start = text.find("  iocd.toml: |\n").unwrap() + 15;
    let config: String = text[start..]
        .lines()
        .take_while(|l| l.starts_with("    "))
        .map(|l| match l.trim_start().strip_prefix("url = ") {
            Some(_) => format!(
                "path = {:?}",
                dir.join("feeds/local.txt").display().to_string()
            ),
            None => l[4..].to_owned(),
        })
        .map(|l| {
            l.replace(
                "/var/lib/iocd",
                &dir.join("sidecar-state").display().to_string(),
            )
            .replace("/var/log/app", &dir.display().to_string())
                + "\n"
        })
        .collect();
    std::fs::write(dir.join("sidecar.toml"), config).unwrap();
    let out = common::check(&dir.join("sidecar.toml"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The alert rules load and their unit tests pass (`promtool`).
#[test]
fn alert_rules_check_and_pass_their_unit_tests() {
    if !common::installed("promtool", "alert_rules_check_and_pass_their_unit_tests") {
        return;
    }
    let dir = root().join("deploy/monitoring");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every metric the dashboard and the alerts query is one iocd exports
/// (a renamed metric must not leave a panel silently empty).
#[test]
fn dashboard_and_alerts_query_metrics_iocd_exports() {
    let exported = std::fs::read_to_string(root().join("src/metrics.rs")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/monitoring/grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    queries.push(std::fs::read_to_string(root().join("deploy/monitoring/alerts.yml")).unwrap());
    let mut seen = 0;
    for q in &queries {
        for (at, _) in q.match_indices("iocd_") {
            let name: String = q[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                exported.contains(&format!("\"{base}\"")),
                "{base} is not exported"
            );
            seen += 1;
        }
    }
    assert!(seen > 20, "{seen}");
}

/// The scale-out examples' configs (Kafka in the manifest, NATS in
/// deploy/examples) pass `iocd check`, which checks broker settings
/// without connecting.
#[test]
fn broker_examples_pass_check() {
    let dir = common::test_dir("broker-examples");
    std::fs::create_dir_all(dir.join("feeds")).unwrap();
    std::fs::write(dir.join("feeds/local.txt"), "198.51.100.7\n").unwrap();
    let feeds = dir.join("feeds").display().to_string();
    let text = std::fs::read_to_string(root().join("deploy/kubernetes/brokers.yaml")).unwrap();
    let start = text.find("  iocd.toml: |\n").unwrap() + 15;
    let kafka: String = text[start..]
        .lines()
        .take_while(|l| l.starts_with("    "))
        .map(|l| l[4..].replace("/etc/iocd/feeds", &feeds) + "\n")
        .collect();
    let nats = std::fs::read_to_string(root().join("deploy/examples/nats.toml"))
        .unwrap()
        .replace("/etc/iocd/feeds", &feeds);
    for (name, config) in [("kafka.toml", kafka), ("nats.toml", nats)] {
        std::fs::write(dir.join(name), config).unwrap();
        let out = common::check(&dir.join(name));
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// No Docker engine runs here, so the image is not built in the tests: the
/// Dockerfile is held to what the image must be (a static build stage, an
/// empty runtime base without a shell, a non-root user, exec-form entry),
/// and `.ci/run` builds the same static binary and runs it.
#[test]
fn container_image_is_static_non_root_and_shell_free() {
    let text = std::fs::read_to_string(root().join("deploy/container/Dockerfile")).unwrap();
    let directives: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.starts_with(' '))
        .filter_map(|l| l.split_once(' '))
        .collect();
    let froms: Vec<&str> = directives
        .iter()
        .filter(|(d, _)| *d == "FROM")
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "a build stage and a runtime stage: {froms:?}"
    );
    assert!(
        froms[0].contains("alpine"),
        "musl build stage: {}",
        froms[0]
    );
    assert_eq!(
        froms[1], "scratch",
        "no shell or package manager at run time"
    );
    assert!(text.contains("--features static"), "statically linked");
    let last_user = directives
        .iter()
        .rev()
        .find(|(d, _)| *d == "USER")
        .map(|(_, a)| *a)
        .expect("a USER");
    let uid: u32 = last_user.split(':').next().unwrap().parse().unwrap();
    assert!(uid != 0, "runs as uid {uid}");
    let entry = directives
        .iter()
        .find(|(d, _)| *d == "ENTRYPOINT")
        .map(|(_, a)| *a)
        .expect("an ENTRYPOINT");
    assert!(entry.starts_with('['), "exec form, no shell: {entry}");
    // Into the runtime stage: the binary, CA roots and the state directory;
    // nothing from a build stage's /bin (a shell, busybox).
    for copy in directives
        .iter()
        .filter(|(d, a)| *d == "COPY" && a.contains("--from="))
    {
        let source = copy.1.split_whitespace().rev().nth(1).unwrap();
        assert!(
            !source.starts_with("/bin") && !source.starts_with("/usr/bin"),
            "{}",
            copy.1
        );
    }
}
