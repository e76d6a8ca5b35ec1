//! The shipped systemd units and their environment files, read the way
//! systemd reads them, so tests can start a daemon exactly as its unit
//! would: the `ExecStart=` command line with the environment file's
//! variables substituted (systemd.service(5), "Command lines"), and the
//! settings that decide the process's identity and limits.
//!
//! Only what the shipped units use is understood: one `ExecStart=` without
//! prefixes, `$VAR` and `${VAR}` (no `%` specifiers), `KEY=value` lines in
//! environment files with optional quotes.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// The deploy directory of the workspace (units, env files, manifests).
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The unit file of `daemon` (`tcpcopy` or `intercept`) as shipped.
pub fn unit_path(daemon: &str) -> PathBuf {
    deploy_dir()
        .join("systemd")
        .join(format!("{daemon}.service"))
}

/// The environment file of `daemon` as shipped (installed as
/// `/etc/default/<daemon>`).
pub fn env_file_path(daemon: &str) -> PathBuf {
    deploy_dir()
        .join("systemd")
        .join(format!("{daemon}.default"))
}

/// One unit file: every `key=value` of every section, in order (a key
/// may repeat, as `SystemCallFilter=` does).
#[derive(Clone, Debug, Default)]
pub struct Unit {
    pub entries: Vec<(String, String, String)>,
}

impl Unit {
    pub fn parse(text: &str) -> Self {
        let mut entries = Vec::new();
        let mut section = String::new();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let line = line.trim();
            if line.is_empty() || line.starts_with(['#', ';']) {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                continue;
            }
            let mut logical = line.to_owned();
            while let Some(stripped) = logical.strip_suffix('\\') {
                logical = stripped.to_owned();
                match lines.next() {
                    Some(next) => logical.push_str(next.trim()),
                    None => break,
                }
            }
            if let Some((key, value)) = logical.split_once('=') {
                entries.push((
                    section.clone(),
                    key.trim().to_owned(),
                    value.trim().to_owned(),
                ));
            }
        }
        Self { entries }
    }

    /// Reads a unit file.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string(path)?))
    }

    /// Every value of `key` in `[Service]`, in order.
    pub fn service_values(&self, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(s, k, _)| s == "Service" && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The last value of `key` in `[Service]` (a later one overrides).
    pub fn service(&self, key: &str) -> Option<&str> {
        self.service_values(key).pop()
    }

    /// The words of every value of `key` (lists such as
    /// `AmbientCapabilities=` or `SystemCallFilter=`), all values joined.
    pub fn service_words(&self, key: &str) -> Vec<&str> {
        self.service_values(key)
            .into_iter()
            .flat_map(str::split_whitespace)
            .collect()
    }

    /// Whether boolean `key` is on.
    pub fn service_flag(&self, key: &str) -> bool {
        self.service(key)
            .is_some_and(|v| matches!(v, "yes" | "true" | "on" | "1"))
    }
}

/// The variables of an environment file (`KEY=value`, comments, optional
/// single or double quotes around the value).
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.insert(key.trim().to_owned(), unquoted.to_owned());
    }
    vars
}

/// `exec` (an `ExecStart=` value) as the argv systemd runs: split into
/// words (quotes respected), a word that is exactly `$VAR` replaced by
/// VAR's value split at whitespace (zero or more words), `${VAR}` replaced
/// by the exact value inside its word. Unset variables are empty.
pub fn expand_exec(exec: &str, env: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    let words = shlex::split(exec).ok_or_else(|| format!("unbalanced quotes in {exec:?}"))?;
    let mut argv = Vec::new();
    for word in words {
        let bare = word.strip_prefix('$').filter(|name| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if let Some(name) = bare {
            let value = env.get(name).map(String::as_str).unwrap_or_default();
            argv.extend(value.split_whitespace().map(str::to_owned));
            continue;
        }
        let mut out = String::new();
        let mut rest = word.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {word:?}"))?;
            out.push_str(
                env.get(&after[..end])
                    .map(String::as_str)
                    .unwrap_or_default(),
            );
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        argv.push(out);
    }
    Ok(argv)
}

/// `daemon`'s shipped unit and environment file: the argv its
/// `ExecStart=` runs, with `overrides` replacing (or adding) variables of
/// the environment file.
pub fn shipped_command(daemon: &str, overrides: &[(&str, &str)]) -> Result<Vec<String>, String> {
    let unit = Unit::read(&unit_path(daemon)).map_err(|e| e.to_string())?;
    let env_file = unit
        .service("EnvironmentFile")
        .ok_or("the unit has no EnvironmentFile=")?;
    if env_file != format!("/etc/default/{daemon}") {
        return Err(format!(
            "EnvironmentFile={env_file}: the package installs /etc/default/{daemon}"
        ));
    }
    let mut env =
        parse_env_file(&std::fs::read_to_string(env_file_path(daemon)).map_err(|e| e.to_string())?);
    for (k, v) in overrides {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let exec = unit
        .service("ExecStart")
        .ok_or("the unit has no ExecStart=")?;
    expand_exec(exec, &env)
}

/// Capability names of a unit (`CAP_NET_ADMIN`) as `setpriv` takes them
/// (`+net_admin`), comma separated.
pub fn setpriv_caps(caps: &[&str]) -> String {
    caps.iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn exec_lines_expand_as_systemd_expands_them() {
        let e = env(&[("ONE", "a b"), ("OPTS", " -L  --workers 2 "), ("EMPTY", "")]);
        assert_eq!(
            expand_exec("/usr/bin/x -x ${ONE} $OPTS $EMPTY $UNSET pre${ONE}post", &e).unwrap(),
            [
                "/usr/bin/x",
                "-x",
                "a b",
                "-L",
                "--workers",
                "2",
                "prea bpost"
            ]
        );
        assert_eq!(
            expand_exec("/usr/bin/x ${UNSET}", &e).unwrap(),
            ["/usr/bin/x", ""],
            "${{VAR}} is always one word"
        );
        assert!(expand_exec("/usr/bin/x ${ONE", &e).is_err());
    }

    #[test]
    fn env_files_and_units_parse() {
        let vars = parse_env_file("# c\n\nA=1\nB=\"x y\"\nC='z'\n D = w \n");
        assert_eq!(
            vars,
            env(&[("A", "1"), ("B", "x y"), ("C", "z"), ("D", "w")])
        );
        let unit = Unit::parse(
            "[Unit]\nDescription=d\n[Service]\nExecStart=/bin/x \\\n  -y\nSystemCallFilter=@a b\n\
             SystemCallFilter=c\nNoNewPrivileges=yes\n",
        );
        assert_eq!(unit.service("ExecStart"), Some("/bin/x -y"));
        assert_eq!(unit.service_words("SystemCallFilter"), ["@a", "b", "c"]);
        assert!(unit.service_flag("NoNewPrivileges"));
        assert_eq!(unit.service("Description"), None, "[Unit], not [Service]");
        assert_eq!(
            setpriv_caps(&["CAP_BPF", "CAP_NET_ADMIN"]),
            "+bpf,+net_admin"
        );
    }

    /// The shipped units start the daemons with the shipped environment
    /// files' values, and that command line is one the daemon accepts.
    #[test]
    fn shipped_units_start_a_command_line_the_daemon_accepts() {
        for (daemon, must_have) in [("tcpcopy", "-x"), ("intercept", "--target")] {
            let argv = shipped_command(daemon, &[]).unwrap();
            assert_eq!(
                argv[0],
                format!("/usr/bin/{daemon}"),
                "where the package installs it"
            );
            assert!(argv.iter().any(|a| a == must_have), "{argv:?}");
            let mut as_typed = argv.clone();
            as_typed[0] = daemon.to_owned();
            crate::examples::parse(&as_typed).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            for bad in ["-d", "--daemon", "-l", "-P"] {
                assert!(
                    !argv.iter().any(|a| a == bad),
                    "{daemon}: {bad} in a unit of Type=exec: {argv:?}"
                );
            }
        }
    }

    /// The environment files tell the admin to source them in a shell to
    /// run `doctor` with the service's values: a shell reads every value
    /// as systemd does.
    #[test]
    fn env_files_read_the_same_in_a_shell() {
        for daemon in ["tcpcopy", "intercept"] {
            let path = env_file_path(daemon);
            let vars = parse_env_file(&std::fs::read_to_string(&path).unwrap());
            assert!(vars.len() >= 3, "{daemon}: {vars:?}");
            for (key, value) in &vars {
                let out = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(format!(". \"$0\" && printf %s \"${key}\""))
                    .arg(&path)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{daemon}: {out:?}");
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout),
                    *value,
                    "{daemon}: {key}"
                );
            }
        }
    }

    /// What the units grant: the capabilities setup needs and no other,
    /// no way to gain more, and the hardening the README promises.
    #[test]
    fn shipped_units_grant_only_what_setup_needs() {
        for (daemon, caps) in [
            (
                "tcpcopy",
                &["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_NET_RAW"][..],
            ),
            (
                "intercept",
                &["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"][..],
            ),
        ] {
            let unit = Unit::read(&unit_path(daemon)).unwrap();
            assert_eq!(unit.service_words("AmbientCapabilities"), caps, "{daemon}");
            assert_eq!(
                unit.service_words("CapabilityBoundingSet"),
                caps,
                "{daemon}"
            );
            assert_eq!(
                unit.service("User"),
                None,
                "{daemon}: a dynamic user, not a fixed one"
            );
            for flag in [
                "DynamicUser",
                "NoNewPrivileges",
                "ProtectHome",
                "PrivateTmp",
                "PrivateDevices",
                "ProtectKernelTunables",
                "ProtectKernelModules",
                "ProtectControlGroups",
                "RestrictNamespaces",
                "RestrictSUIDSGID",
                "LockPersonality",
                "MemoryDenyWriteExecute",
            ] {
                assert!(unit.service_flag(flag), "{daemon}: {flag}=yes");
            }
            assert_eq!(unit.service("ProtectSystem"), Some("strict"), "{daemon}");
            assert_eq!(unit.service("SystemCallArchitectures"), Some("native"));
            assert_eq!(unit.service("LimitMEMLOCK"), Some("infinity"), "{daemon}");
            assert_eq!(
                unit.service("Type"),
                Some("exec"),
                "{daemon}: runs in the foreground"
            );
            let families = unit.service_words("RestrictAddressFamilies");
            for family in ["AF_NETLINK", "AF_INET", "AF_INET6"] {
                assert!(families.contains(&family), "{daemon}: {family}");
            }
            if daemon == "tcpcopy" {
                assert!(families.contains(&"AF_XDP") && families.contains(&"AF_PACKET"));
            }
            assert!(
                unit.service_words("SystemCallFilter").contains(&"bpf"),
                "{daemon}"
            );
        }
    }
}
