//! Documented command lines: the examples in both daemons' `--help`
//! texts (and so in their man pages) and in the README, found as written
//! and parsed by the daemon they are for, exactly as it would parse them.
//!
//! A command line is an indented line whose first word is `tcpcopy` or
//! `intercept` (continued on the next line when it ends in `\`); its words
//! are split as a POSIX shell splits them (quotes, no expansion).

use clap::Parser;

/// The daemons whose command lines are checked.
pub const PROGRAMS: [&str; 2] = ["tcpcopy", "intercept"];

/// The command lines in `text`, joined across `\` line continuations.
/// Only indented lines count (examples are indented in help texts and in
/// the README's code blocks; prose that starts with a program's name is
/// not).
pub fn command_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with([' ', '\t']) {
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or_default();
        if !PROGRAMS.contains(&first) {
            continue;
        }
        let mut command = line.trim().to_owned();
        while let Some(stripped) = command.strip_suffix('\\') {
            command = stripped.trim_end().to_owned();
            match lines.next() {
                Some(next) => {
                    command.push(' ');
                    command.push_str(next.trim());
                }
                None => break,
            }
        }
        out.push(command);
    }
    out
}

/// `line` split into words as a shell would (without expansion).
pub fn words(line: &str) -> Result<Vec<String>, String> {
    shlex::split(line).ok_or_else(|| format!("unbalanced quotes in {line:?}"))
}

/// Parses `argv` (program name first) with the parser of the daemon it
/// names, `doctor` included, and runs the checks the daemon runs before it
/// starts (`validate`); the error says what the daemon would say.
pub fn parse(argv: &[String]) -> Result<(), String> {
    let program = argv.first().map(String::as_str).unwrap_or_default();
    let doctor = argv.get(1).is_some_and(|a| a == "doctor");
    let rest = argv.iter().skip(if doctor { 2 } else { 1 });
    let err = |e: clap::Error| e.render().to_string();
    match (program, doctor) {
        ("tcpcopy", false) => {
            let cli = tcpcopy_user::cli::Cli::try_parse_from(argv).map_err(err)?;
            cli.validate()
        }
        ("tcpcopy", true) => {
            let argv = std::iter::once("tcpcopy doctor".to_owned()).chain(rest.cloned());
            let cli = tcpcopy_user::doctor::DoctorCli::try_parse_from(argv).map_err(err)?;
            cli.run.validate()
        }
        ("intercept", _) => {
            let argv = std::iter::once("intercept".to_owned()).chain(rest.cloned());
            intercept_user::cli::Cli::try_parse_from(argv)
                .map(|_| ())
                .map_err(err)
        }
        _ => Err(format!("{program:?} is not one of {PROGRAMS:?}")),
    }
}

/// Every command line of `text` that does not parse, with the error.
pub fn failures(text: &str) -> Vec<(String, String)> {
    command_lines(text)
        .into_iter()
        .filter_map(|line| {
            let result = words(&line).and_then(|argv| parse(&argv));
            result.err().map(|e| (line, e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn help_text(command: clap::Command) -> String {
        command
            .get_after_help()
            .expect("the help has examples")
            .to_string()
    }

    /// Checks that `text` has at least `min` command lines and that every
    /// one parses.
    fn check(what: &str, text: &str, min: usize) {
        let lines = command_lines(text);
        assert!(
            lines.len() >= min,
            "{what}: found only {} command lines: {lines:#?}",
            lines.len()
        );
        let failed = failures(text);
        assert!(
            failed.is_empty(),
            "{what}: examples that do not parse: {failed:#?}"
        );
        println!("{what}: {} examples parse", lines.len());
    }

    #[test]
    fn command_lines_are_found_joined_and_split_like_a_shell_would() {
        let text = "\
tcpcopy at the start of prose is not an example
  # a comment
  tcpcopy -x 80-10.0.0.2:80 \\
      -s 10.0.0.3 -i eth0 -o eth1
    intercept -i eth0 -F 'tcp and src port 80'
  cargo xtask demo
";
        let lines = command_lines(text);
        assert_eq!(
            lines,
            [
                "tcpcopy -x 80-10.0.0.2:80 -s 10.0.0.3 -i eth0 -o eth1",
                "intercept -i eth0 -F 'tcp and src port 80'"
            ]
        );
        assert_eq!(
            words(&lines[1]).unwrap(),
            ["intercept", "-i", "eth0", "-F", "tcp and src port 80"]
        );
        assert!(failures(text).is_empty());
        let bad = "  tcpcopy -x 80 -s 10.0.0.3 -i eth0 -o eth1\n  intercept --bogus\n";
        let failed = failures(bad);
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(failed[0].1.contains("bad transfer rule"), "{failed:?}");
        assert!(failed[1].1.contains("--bogus"), "{failed:?}");
    }

    #[test]
    fn tcpcopy_help_examples_parse() {
        check(
            "tcpcopy --help",
            &help_text(tcpcopy_user::cli::Cli::command()),
            6,
        );
        check(
            "tcpcopy doctor --help",
            &help_text(tcpcopy_user::doctor::DoctorCli::command()),
            1,
        );
    }

    #[test]
    fn intercept_help_examples_parse() {
        check(
            "intercept --help",
            &help_text(intercept_user::cli::Cli::command()),
            7,
        );
        let pages = crate::manuals();
        let doctor = pages
            .iter()
            .find(|m| m.name == "intercept-doctor")
            .expect("intercept-doctor page");
        check(
            "intercept doctor --help",
            &help_text(doctor.command.clone()),
            2,
        );
    }

    #[test]
    fn readme_command_examples_parse() {
        let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let text = std::fs::read_to_string(&readme).expect("the README");
        check("README.md", &text, 15);
    }
}
