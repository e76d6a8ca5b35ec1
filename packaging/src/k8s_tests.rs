//! What the Kubernetes manifests of `deploy/k8s/` mean (their schema is
//! checked by `cargo xtask lint` and xtask's tests): each pod on the host's
//! network with the capabilities its systemd unit grants and no other, and
//! a container command line, with the ConfigMap's values substituted as
//! the kubelet substitutes `$(VAR)`, that the daemon accepts.

use std::collections::BTreeMap;

use yaml_rust2::{Yaml, YamlLoader};

use crate::unit::{self, Unit};

fn manifest(name: &str) -> Yaml {
    let path = unit::deploy_dir().join("k8s").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(docs.len(), 1, "{name}: one resource per file");
    docs.remove(0)
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("a list: {y:?}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("a string: {s:?}"))
                .to_owned()
        })
        .collect()
}

/// `$(VAR)` replaced by `vars[VAR]`, as the kubelet expands a container's
/// command and args; an unknown variable is a test failure (the kubelet
/// would pass it on unexpanded).
fn expand(arg: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find(')')
            .unwrap_or_else(|| panic!("unclosed $( in {arg:?}"));
        let name = &after[..end];
        out.push_str(
            vars.get(name)
                .unwrap_or_else(|| panic!("$({name}) is in no ConfigMap")),
        );
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Checks the pod of `workload` running `daemon`, configured by
/// `config_map`; returns the container's argv as the daemon would see it.
fn check_pod(workload: &Yaml, config_map: &Yaml, daemon: &str) -> Vec<String> {
    let pod = &workload["spec"]["template"]["spec"];
    assert_eq!(
        pod["hostNetwork"].as_bool(),
        Some(true),
        "{daemon}: the host's network"
    );
    let name = "app.kubernetes.io/name";
    let selected = &workload["spec"]["selector"]["matchLabels"][name];
    assert_eq!(selected.as_str(), Some(daemon), "{daemon}: the selector");
    assert_eq!(
        &workload["spec"]["template"]["metadata"]["labels"][name], selected,
        "{daemon}: the selector matches the pod"
    );
    let containers = pod["containers"].as_vec().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let security = &c["securityContext"];
    assert_eq!(security["privileged"].as_bool(), Some(false), "{daemon}");
    assert_eq!(
        security["allowPrivilegeEscalation"].as_bool(),
        Some(false),
        "{daemon}"
    );
    assert_eq!(
        security["readOnlyRootFilesystem"].as_bool(),
        Some(true),
        "{daemon}"
    );
    assert_eq!(
        strings(&security["capabilities"]["drop"]),
        ["ALL"],
        "{daemon}"
    );
    let added = strings(&security["capabilities"]["add"]);
    let unit = Unit::read(&unit::unit_path(daemon)).unwrap();
    let granted: Vec<String> = unit
        .service_words("AmbientCapabilities")
        .iter()
        .map(|c| c.trim_start_matches("CAP_").to_owned())
        .collect();
    assert_eq!(added, granted, "{daemon}: the capabilities its unit grants");

    let from = &c["envFrom"].as_vec().expect("envFrom")[0]["configMapRef"]["name"];
    assert_eq!(
        from, &config_map["metadata"]["name"],
        "{daemon}: its ConfigMap"
    );
    assert_eq!(
        config_map["metadata"]["namespace"], workload["metadata"]["namespace"],
        "{daemon}: one namespace"
    );
    let vars: BTreeMap<String, String> = config_map["data"]
        .as_hash()
        .expect("ConfigMap data")
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_owned(),
                v.as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut argv = strings(&c["command"]);
    assert_eq!(
        argv,
        [format!("/usr/bin/{daemon}")],
        "{daemon}: where the package installs it"
    );
    argv[0] = daemon.to_owned();
    argv.extend(strings(&c["args"]).iter().map(|a| expand(a, &vars)));
    crate::examples::parse(&argv).unwrap_or_else(|e| panic!("{daemon} {argv:?}: {e}"));
    argv
}

#[test]
fn tcpcopy_daemonset_runs_the_configured_replay_with_the_units_capabilities() {
    let argv = check_pod(
        &manifest("tcpcopy-daemonset.yaml"),
        &manifest("tcpcopy-config.yaml"),
        "tcpcopy",
    );
    assert!(
        argv.windows(2).any(|w| w == ["-x", "80-10.0.0.2:80"]),
        "{argv:?}"
    );
    // The ConfigMap's keys are the variables of /etc/default/tcpcopy.
    let env =
        unit::parse_env_file(&std::fs::read_to_string(unit::env_file_path("tcpcopy")).unwrap());
    let config = manifest("tcpcopy-config.yaml");
    for key in config["data"].as_hash().unwrap().keys() {
        assert!(
            env.contains_key(key.as_str().unwrap()),
            "{key:?} is not in the env file"
        );
    }
    assert_eq!(
        manifest("tcpcopy-daemonset.yaml")["kind"].as_str(),
        Some("DaemonSet")
    );
}

#[test]
fn intercept_deployment_runs_one_replica_with_the_units_capabilities() {
    let deployment = manifest("intercept-deployment.yaml");
    let argv = check_pod(&deployment, &manifest("intercept-config.yaml"), "intercept");
    assert!(
        argv.windows(2).any(|w| w == ["--target", "10.0.0.2:80"]),
        "{argv:?}"
    );
    assert_eq!(deployment["kind"].as_str(), Some("Deployment"));
    assert_eq!(deployment["spec"]["replicas"].as_i64(), Some(1));
    assert_eq!(
        deployment["spec"]["strategy"]["type"].as_str(),
        Some("Recreate"),
        "two intercepts cannot hold the node's port"
    );
    let port = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0];
    assert_eq!(port["containerPort"].as_i64(), Some(36524));
}
