//! What the packages ship that comes from the code rather than from a file
//! in the tree: the man pages and shell completions of `tcpcopy` and
//! `intercept`, generated from their clap definitions (so they never
//! disagree with `--help`), plus the readers the packaging checks share:
//! documented command lines ([`examples`]) and the shipped systemd units
//! read the way systemd reads them ([`unit`]).
//!
//! `cargo xtask dist` writes [`write_manuals`]' output next to the
//! binaries of the profile it packages (`target/<profile>/manuals`), where
//! the `cargo deb` metadata of both daemons takes it from.
//!
//! The `doctor` subcommand of each daemon is dispatched by its `main.rs`
//! before the daemon's own parser runs; it gets a page of its own
//! (`tcpcopy-doctor(8)`), and the completions offer it as a subcommand.

pub mod examples;
#[cfg(test)]
mod k8s_tests;
pub mod unit;

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::Context;
use clap::{Command, CommandFactory};
use clap_complete::Shell;
use roff::{Roff, roman};

/// Man page section of both daemons (system administration).
pub const SECTION: &str = "8";

/// One man page: `name.8`, documenting `command`.
pub struct Manual {
    /// The page's name and file stem, e.g. `tcpcopy-doctor`.
    pub name: &'static str,
    /// The command line it documents, as clap parses it.
    pub command: Command,
    /// Text of the SEE ALSO section's extra lines and the FILES section.
    pub files: &'static [(&'static str, &'static str)],
    pub see_also: &'static [&'static str],
}

const INTERCEPT_DOCTOR_ABOUT: &str = "Checks what intercept needs on this host with these \
options: its interfaces and the reply program on each (XDP with -i, TC with --egress), IP \
forwarding (an assistant must not forward), the listen address, and with --egress that the \
replies to each client range leave by an intercepted interface. Prints one line per check \
with a fix for each problem; exits 1 if any check failed.";

const INTERCEPT_DOCTOR_EXAMPLES: &str = "\
Examples:
  On the assistant host, with intercept's own options:
    intercept doctor -i eth0 --target 10.0.0.2:80

  On the target itself (no assistant):
    intercept doctor --egress eth0 --target 0.0.0.0:80 --clients 192.168.7.0/24";

/// The four pages: each daemon and its `doctor`.
pub fn manuals() -> Vec<Manual> {
    vec![
        Manual {
            name: "tcpcopy",
            command: tcpcopy_user::cli::Cli::command(),
            files: &[
                (
                    "/usr/lib/systemd/system/tcpcopy.service",
                    "The systemd unit: a dynamic user with the capabilities setup needs.",
                ),
                (
                    "/etc/default/tcpcopy",
                    "The options the unit starts tcpcopy with.",
                ),
            ],
            see_also: &["tcpcopy-doctor(8)", "intercept(8)", "systemd.exec(5)"],
        },
        Manual {
            name: "tcpcopy-doctor",
            command: tcpcopy_user::doctor::DoctorCli::command(),
            files: &[],
            see_also: &["tcpcopy(8)", "intercept-doctor(8)"],
        },
        Manual {
            name: "intercept",
            command: intercept_user::cli::Cli::command(),
            files: &[
                (
                    "/usr/lib/systemd/system/intercept.service",
                    "The systemd unit: a dynamic user with the capabilities setup needs.",
                ),
                (
                    "/etc/default/intercept",
                    "The options the unit starts intercept with.",
                ),
            ],
            see_also: &["intercept-doctor(8)", "tcpcopy(8)", "systemd.exec(5)"],
        },
        Manual {
            name: "intercept-doctor",
            command: intercept_doctor_command(),
            files: &[],
            see_also: &["intercept(8)", "tcpcopy-doctor(8)"],
        },
    ]
}

/// `intercept doctor` takes intercept's own options.
fn intercept_doctor_command() -> Command {
    intercept_user::cli::Cli::command()
        .name("intercept doctor")
        .about(INTERCEPT_DOCTOR_ABOUT)
        .long_about(None)
        .after_help(INTERCEPT_DOCTOR_EXAMPLES)
}

impl Manual {
    /// The page's file name, e.g. `tcpcopy.8`.
    pub fn file_name(&self) -> String {
        format!("{}.{SECTION}", self.name)
    }

    /// The page in roff: clap_mangen's title, NAME, SYNOPSIS, DESCRIPTION
    /// and OPTIONS, then the help text's examples kept as they are laid
    /// out (clap_mangen would fill them into paragraphs), FILES, SEE ALSO
    /// and the version.
    pub fn render(&self) -> Vec<u8> {
        let mut command = self.command.clone().disable_help_subcommand(true);
        command.build();
        let man = clap_mangen::Man::new(command.clone())
            .title(self.name.to_uppercase())
            .section(SECTION)
            .source(format!("tcpcopy {}", env!("CARGO_PKG_VERSION")))
            .manual("System Administration");
        let mut out = Vec::new();
        let sections: [RenderSection; 5] = [
            clap_mangen::Man::render_title,
            clap_mangen::Man::render_name_section,
            clap_mangen::Man::render_synopsis_section,
            clap_mangen::Man::render_description_section,
            clap_mangen::Man::render_options_section,
        ];
        for section in sections {
            section(&man, &mut out).expect("writing to a Vec never fails");
        }
        let mut roff = Roff::new();
        if let Some(after) = command.get_after_help() {
            roff.control("SH", ["EXAMPLES"]);
            roff.control("nf", []);
            for line in after.to_string().lines() {
                // The help text heads its examples with "Examples:"; the
                // section title says it already.
                if !line.trim_end().ends_with("Examples:") && !line.trim_end().ends_with("Example:")
                {
                    roff.text([roman(line)]);
                }
            }
            roff.control("fi", []);
        }
        if !self.files.is_empty() {
            roff.control("SH", ["FILES"]);
            for (path, what) in self.files {
                roff.control("TP", []);
                roff.text([roff::bold(*path)]);
                roff.text([roman(*what)]);
            }
        }
        roff.control("SH", ["SEE ALSO"]);
        roff.text([roman(self.see_also.join(", "))]);
        roff.control("SH", ["VERSION"]);
        roff.text([roman(env!("CARGO_PKG_VERSION"))]);
        roff.to_writer(&mut out)
            .expect("writing to a Vec never fails");
        out
    }
}

/// One of clap_mangen's section renderers.
type RenderSection = fn(&clap_mangen::Man, &mut dyn Write) -> std::io::Result<()>;

/// The command line each daemon's completions describe: its own options,
/// plus `doctor` as the subcommand `main.rs` dispatches.
pub fn completion_commands() -> Vec<Command> {
    let tcpcopy = tcpcopy_user::cli::Cli::command()
        .subcommand(
            tcpcopy_user::doctor::DoctorCli::command()
                .name("doctor")
                .disable_version_flag(true),
        )
        .subcommand_negates_reqs(true)
        .args_conflicts_with_subcommands(true);
    let intercept = intercept_user::cli::Cli::command()
        .subcommand(
            intercept_doctor_command()
                .name("doctor")
                .disable_version_flag(true),
        )
        .subcommand_negates_reqs(true)
        .args_conflicts_with_subcommands(true);
    vec![tcpcopy, intercept]
}

/// The shells completions are made for, with where each one's file goes
/// (relative to the completions directory and to the installed root).
pub const SHELLS: [(Shell, &str, &str); 3] = [
    (
        Shell::Bash,
        "bash/{}",
        "usr/share/bash-completion/completions/{}",
    ),
    (
        Shell::Zsh,
        "zsh/_{}",
        "usr/share/zsh/vendor-completions/_{}",
    ),
    (
        Shell::Fish,
        "fish/{}.fish",
        "usr/share/fish/vendor_completions.d/{}.fish",
    ),
];

/// `pattern` (one of [`SHELLS`]' paths) for program `name`.
pub fn shell_path(pattern: &str, name: &str) -> String {
    pattern.replace("{}", name)
}

/// The completion script of `command` for `shell`.
pub fn completion(shell: Shell, command: &Command) -> Vec<u8> {
    let mut command = command.clone();
    let name = command.get_name().to_owned();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut out);
    out
}

/// Writes every man page to `dir/man/` and every completion script to
/// `dir/completions/<shell>/`; returns the files written.
pub fn write_manuals(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut write = |path: PathBuf, bytes: &[u8]| -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
        Ok(())
    };
    for manual in manuals() {
        write(dir.join("man").join(manual.file_name()), &manual.render())?;
    }
    for command in completion_commands() {
        for (shell, pattern, _) in SHELLS {
            let path = dir
                .join("completions")
                .join(shell_path(pattern, command.get_name()));
            write(path, &completion(shell, &command))?;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(name: &str) -> String {
        let manual = manuals()
            .into_iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no page {name}"));
        String::from_utf8(manual.render()).expect("roff is UTF-8")
    }

    #[test]
    fn every_page_has_its_sections_and_every_visible_option() {
        for manual in manuals() {
            let text = page(manual.name);
            assert!(
                text.contains(&format!("\n.TH {} 8 ", manual.name.to_uppercase())),
                "{}: {}",
                manual.name,
                &text[..120]
            );
            for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SEE ALSO"] {
                assert!(
                    text.contains(&format!(".SH {section}"))
                        || text.contains(&format!(".SH \"{section}\"")),
                    "{} has no {section} section",
                    manual.name
                );
            }
            for arg in manual.command.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    // roff escapes '-' as '\-'.
                    let escaped = format!("\\-\\-{}", long.replace('-', "\\-"));
                    assert!(text.contains(&escaped), "{}: --{long} missing", manual.name);
                }
            }
        }
    }

    #[test]
    fn pages_keep_the_help_examples_line_by_line() {
        let tcpcopy = page("tcpcopy");
        let examples = &tcpcopy[tcpcopy.find(".SH EXAMPLES").expect("an EXAMPLES section")..];
        assert!(examples.contains("\n.nf\n"), "examples are not filled");
        assert!(
            examples
                .contains("\ntcpcopy \\-x 80\\-10.0.0.2:8080 \\-s 10.0.0.3 \\-i eth0 \\-o eth1\n")
                || examples.contains(
                    "tcpcopy \\-x 80\\-10.0.0.2:8080 \\-s 10.0.0.3 \\-i eth0 \\-o eth1\n"
                ),
            "{examples}"
        );
        assert!(page("tcpcopy").contains("/etc/default/tcpcopy"));
        assert!(page("intercept").contains("/etc/default/intercept"));
        let doctor = page("intercept-doctor");
        assert!(doctor.contains("intercept doctor \\-i eth0"), "{doctor}");
        assert!(page("tcpcopy-doctor").contains("\\-\\-probe\\-client"));
    }

    #[test]
    fn completions_offer_options_and_the_doctor_subcommand() {
        for command in completion_commands() {
            let name = command.get_name().to_owned();
            for (shell, _, _) in SHELLS {
                let script = String::from_utf8(completion(shell, &command)).unwrap();
                assert!(script.len() > 500, "{name} {shell}: {script}");
                assert!(script.contains("doctor"), "{name} {shell}: no doctor");
                let long = if name == "tcpcopy" {
                    "transfer"
                } else {
                    "egress"
                };
                assert!(script.contains(long), "{name} {shell}: no --{long}");
            }
        }
        let bash = String::from_utf8(completion(Shell::Bash, &completion_commands()[0])).unwrap();
        assert!(bash.contains("complete -F _tcpcopy"), "{bash}");
        assert!(bash.contains("--probe-client"), "doctor's own option");
    }

    #[test]
    fn manuals_are_written_where_the_deb_metadata_takes_them() {
        let dir = std::env::temp_dir().join(format!("tcpcopy-manuals-{}", std::process::id()));
        let written = write_manuals(&dir).unwrap();
        let rel: Vec<String> = written
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        for want in [
            "man/tcpcopy.8",
            "man/tcpcopy-doctor.8",
            "man/intercept.8",
            "man/intercept-doctor.8",
            "completions/bash/tcpcopy",
            "completions/zsh/_tcpcopy",
            "completions/fish/tcpcopy.fish",
            "completions/bash/intercept",
            "completions/zsh/_intercept",
            "completions/fish/intercept.fish",
        ] {
            assert!(rel.iter().any(|r| r == want), "{want} not in {rel:?}");
        }
        // Every asset of both packages that comes from here.
        for manifest in ["../tcpcopy-user/Cargo.toml", "../intercept-user/Cargo.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(manifest);
            let text = std::fs::read_to_string(&path).unwrap();
            let assets: Vec<&str> = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("[\"target/release/manuals/"))
                .filter_map(|l| l.split('"').next())
                .collect();
            assert!(assets.len() >= 5, "{manifest}: {assets:?}");
            for asset in assets {
                // `cargo xtask dist` gzips the pages.
                let asset = asset.strip_suffix(".gz").unwrap_or(asset);
                assert!(
                    rel.iter().any(|r| r == asset),
                    "{manifest}: {asset} is not generated"
                );
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
