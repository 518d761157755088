//! The docker-compose deployment: the compose file parses, the leadsift
//! settings it mounts are valid, and the Grafana dashboard queries metrics
//! the binary really exports.

use std::path::PathBuf;
use std::process::Command;

use leadsift_integration_tests::{leadsift_command, services_required};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn docker_compose_file_is_valid() {
    let output = match Command::new("docker-compose")
        .current_dir(repo())
        .args(["--env-file", ".env.example", "config", "--quiet"])
        .output()
    {
        Ok(output) => output,
        Err(error) => {
            let msg = format!(
                "docker-compose is not installed ({error}); install Debian's package with \
                 `apt-get install -y docker-compose` or run scripts/services.sh"
            );
            assert!(!services_required(), "{msg}");
            eprintln!("SKIPPED: {msg}");
            return;
        }
    };
    assert!(output.status.success(), "docker-compose config failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let resolved = Command::new("docker-compose")
        .current_dir(repo())
        .args(["--env-file", ".env.example", "config"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&resolved.stdout);
    for needle in
        ["run\n    - --role\n    - intake", "- triage", "replicas: 2", "KAFKA_PROCESS_ROLES: broker,controller"]
    {
        assert!(text.contains(needle), "resolved compose file lacks {needle:?}:\n{text}");
    }
}

#[test]
fn deployed_settings_file_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("check.db").display());
    // Loading settings validates every key; `quarantine list` then needs only the store.
    let output = leadsift_command()
        .current_dir(dir.path())
        .args(["--config", repo().join("deploy/leadsift/leadsift.toml").to_str().unwrap(), "--db", &db])
        .args(["quarantine", "list"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

/// Metric names (without the `leadsift_` prefix and histogram suffixes) in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in expr.match_indices("leadsift_") {
        let name: String =
            expr[at + "leadsift_".len()..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
        let name =
            ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).map(str::to_owned).unwrap_or(n));
        names.push(name);
    }
    names
}

#[test]
fn dashboard_queries_only_exported_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("deploy/grafana/dashboards/leadsift.json")).unwrap())
            .unwrap();
    let metrics_source = std::fs::read_to_string(repo().join("crates/leadsift-pipeline/src/metrics.rs")).unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            for name in metric_names(target["expr"].as_str().unwrap()) {
                if name.is_empty() {
                    continue; // a job name such as leadsift-triage, not a metric
                }
                assert!(
                    metrics_source.contains(&format!("\"{name}\"")),
                    "dashboard queries unknown metric leadsift_{name}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "only {checked} metric references found");
    assert_eq!(metric_names("rate(leadsift_triage_latency_seconds_bucket[5m])"), vec!["triage_latency_seconds"]);
}

/// Every metric the alert rules use is exported by some crate, and every
/// alert the issue asks for is there.
#[test]
fn alert_rules_use_only_exported_metrics() {
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    let mut sources = String::new();
    for entry in std::fs::read_dir(repo().join("crates")).unwrap() {
        let src = entry.unwrap().path().join("src");
        for file in walk_rs(&src) {
            sources.push_str(&std::fs::read_to_string(file).unwrap());
        }
    }
    let mut checked = 0;
    for name in metric_names(&rules) {
        assert!(sources.contains(&format!("\"{name}\"")), "alerts.yml uses unknown metric leadsift_{name}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} metric references found");
    for alert in ["LeadsiftIntakeStopped", "LeadsiftQueueLagGrowing", "LeadsiftTriageFailing", "LeadsiftSpamShareSpike"]
    {
        assert!(rules.contains(&format!("alert: {alert}")), "alerts.yml lacks {alert}");
    }
    let prometheus = std::fs::read_to_string(repo().join("deploy/prometheus/prometheus.yml")).unwrap();
    assert!(prometheus.contains("/etc/prometheus/alerts.yml"), "prometheus.yml does not load the alert rules");
    let compose = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    assert!(
        compose.contains("./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml"),
        "compose does not mount the rules"
    );
}

fn walk_rs(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return files };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk_rs(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}
