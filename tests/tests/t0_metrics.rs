//! T0: what is written about the metrics matches what the daemons export.
//!
//! - every metric the Grafana dashboard (`deploy/grafana/tcpcopy.json`)
//!   queries is one a daemon exports, and the dashboard shows what it
//!   promises;
//! - the README's list of metrics is exactly what the daemons export (it
//!   is generated: `TCPCOPY_BLESS=1` rewrites the list from the code);
//! - the example Prometheus configuration scrapes both daemons.

use std::{collections::BTreeSet, path::PathBuf};

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every sample name either daemon exports.
fn exported() -> BTreeSet<String> {
    tcpcopy_user::metrics::exported_names()
        .into_iter()
        .chain(intercept_user::metrics::exported_names())
        .collect()
}

/// The words of a PromQL expression that name a metric of ours.
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("tcpcopy_") || w.starts_with("intercept_"))
        .map(str::to_owned)
        .collect()
}

/// Every PromQL expression of the dashboard: the panels' targets (rows'
/// panels too) and the template variables' queries.
fn dashboard_queries(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                    ("query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_queries_only_metrics_the_daemons_export() {
    let text = read("deploy/grafana/tcpcopy.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    let exported = exported();
    let mut used = BTreeSet::new();
    for q in &queries {
        for name in metric_names(q) {
            assert!(
                exported.contains(&name),
                "the dashboard queries {name}, which no daemon exports (in {q:?})"
            );
            used.insert(name);
        }
    }
    // What the dashboard is for.
    for want in [
        "tcpcopy_closed_completed_total",
        "tcpcopy_sessions_syn_total",
        "tcpcopy_sessions_faked_total",
        "tcpcopy_captured_total",
        "tcpcopy_xdp_ring_full_total",
        "tcpcopy_send_dropped_no_next_hop_total",
        "tcpcopy_response_time_seconds_bucket",
        "intercept_ring_records_total",
        "intercept_delivered_total",
        "intercept_dropped_slow_total",
        "intercept_xdp_ring_full_total",
    ] {
        assert!(used.contains(want), "the dashboard shows {want}");
    }
    // Every panel queries a datasource the dashboard lets one pick.
    let titles: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] != "row")
        .map(|p| {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            p["title"].as_str().expect("a title")
        })
        .collect();
    assert!(titles.len() >= 10, "{titles:?}");
}

/// The README's generated list for one daemon.
fn readme_block(readme: &str, daemon: &str) -> (usize, usize) {
    let open = format!("<!-- metrics:{daemon} -->\n");
    let close = format!("<!-- /metrics:{daemon} -->");
    let start = readme
        .find(&open)
        .unwrap_or_else(|| panic!("no {open:?} in the README"))
        + open.len();
    let end = start
        + readme[start..]
            .find(&close)
            .unwrap_or_else(|| panic!("no {close:?} in the README"));
    (start, end)
}

/// `names` as an indented block, wrapped at 76 columns.
fn wrapped(names: &[String]) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for name in names {
        if !line.is_empty() && line.len() + 1 + name.len() > 76 {
            out.push_str(&format!("    {line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(name);
    }
    if !line.is_empty() {
        out.push_str(&format!("    {line}\n"));
    }
    out
}

#[test]
fn the_readme_lists_every_metric() {
    let path = repo_file("README.md");
    let mut readme = read("README.md");
    let bless = std::env::var_os("TCPCOPY_BLESS").is_some();
    let mut stale = Vec::new();
    for (daemon, names) in [
        ("tcpcopy", tcpcopy_user::metrics::exported_names()),
        ("intercept", intercept_user::metrics::exported_names()),
    ] {
        let (start, end) = readme_block(&readme, daemon);
        let want = format!("\n{}\n", wrapped(&names));
        if readme[start..end] != want {
            stale.push(format!("{daemon}:\n{want}"));
            readme.replace_range(start..end, &want);
        }
    }
    if bless && !stale.is_empty() {
        std::fs::write(&path, &readme).expect("rewrite the README");
        return;
    }
    assert!(
        stale.is_empty(),
        "the README's list of metrics is not what the daemons export; \
         TCPCOPY_BLESS=1 cargo test -p tcpcopy-tests --test t0_metrics rewrites it. Now:\n{}",
        stale.join("\n")
    );
}

#[test]
fn the_example_prometheus_configuration_scrapes_both_daemons() {
    let text = read("deploy/prometheus/prometheus.yml");
    for want in [
        "job_name: tcpcopy",
        "job_name: intercept",
        "metrics_path: /metrics",
    ] {
        assert!(text.contains(want), "{want} in prometheus.yml");
    }
    // The ports the README's examples give each daemon.
    let readme = read("README.md");
    for (daemon, port) in [("tcpcopy", ":9530"), ("intercept", ":9531")] {
        assert!(
            readme.lines().any(|l| l.trim_start().starts_with(daemon)
                && l.contains("--metrics")
                && l.contains(port)),
            "the README shows {daemon} --metrics ...{port}"
        );
        assert!(text.contains(port), "prometheus.yml scrapes {port}");
    }
}
