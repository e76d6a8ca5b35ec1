//! `cargo xtask test`: builds everything, then runs the three test tiers of
//! DESIGN section 8 and prints how many tests each ran.
//!
//! - T0: `cargo test` on the default members: pure logic, no privileges.
//! - T1: the `t1_*` targets of `tcpcopy-tests` (BPF_PROG_TEST_RUN).
//! - T2: the `t2_*` targets of `tcpcopy-tests` (the network-namespace lab).
//!
//! T1 and T2 need root. They never skip: without root this task fails, and a
//! kernel tier that ran no test or ignored one is a failure too.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, bail};

#[derive(clap::Args)]
pub struct TestArgs {
    /// Run only these tiers (0, 1, 2); default all.
    #[arg(long = "tier", value_parser = clap::value_parser!(u8).range(0..=2))]
    tiers: Vec<u8>,
    /// Passed to the test binaries (e.g. a test name filter).
    #[arg(last = true)]
    test_args: Vec<String>,
}

#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Tally {
    /// Adds a libtest summary line: "test result: ok. 3 passed; 0 failed; 1 ignored; ...".
    fn add_summary(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

struct Tier {
    name: &'static str,
    what: &'static str,
    kernel: bool,
    cargo_args: Vec<String>,
}

fn kernel_targets(prefix: &str) -> anyhow::Result<Vec<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tests");
    let mut targets = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".rs")
            && stem.starts_with(prefix)
        {
            targets.push(stem.to_owned());
        }
    }
    targets.sort();
    if targets.is_empty() {
        bail!("no {prefix}* test targets in {}", dir.display());
    }
    Ok(targets)
}

fn kernel_tier(name: &'static str, what: &'static str, prefix: &str) -> anyhow::Result<Tier> {
    let mut cargo_args: Vec<String> = ["test", "-p", "tcpcopy-tests", "--features", "kernel"]
        .map(String::from)
        .into();
    for target in kernel_targets(prefix)? {
        cargo_args.push("--test".into());
        cargo_args.push(target);
    }
    Ok(Tier {
        name,
        what,
        kernel: true,
        cargo_args,
    })
}

pub fn run(args: &TestArgs) -> anyhow::Result<()> {
    let wanted = |t: u8| args.tiers.is_empty() || args.tiers.contains(&t);
    let mut tiers = Vec::new();
    if wanted(0) {
        tiers.push(Tier {
            name: "T0",
            what: "pure logic",
            kernel: false,
            cargo_args: vec!["test".into()],
        });
    }
    if wanted(1) {
        tiers.push(kernel_tier("T1", "BPF_PROG_TEST_RUN", "t1_")?);
    }
    if wanted(2) {
        tiers.push(kernel_tier("T2", "namespace lab", "t2_")?);
    }
    if tiers.iter().any(|t| t.kernel) && !crate::is_root() {
        bail!(
            "the kernel tiers (T1 BPF test runs, T2 network namespaces) need root; \
             run as root, or `cargo xtask test --tier 0` for the pure-logic tier alone"
        );
    }

    crate::build_ebpf()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut report = Vec::new();
    for tier in &tiers {
        println!(
            "==> {} ({}): cargo {}",
            tier.name,
            tier.what,
            tier.cargo_args.join(" ")
        );
        let started = Instant::now();
        let mut cmd = Command::new(&cargo);
        cmd.args(&tier.cargo_args);
        if !args.test_args.is_empty() {
            cmd.arg("--").args(&args.test_args);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting cargo for {}", tier.name))?;
        let mut tally = Tally::default();
        for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
            let line = line?;
            println!("{line}");
            tally.add_summary(&line);
        }
        let status = child.wait()?;
        let elapsed = started.elapsed();
        println!(
            "==> {}: {} passed, {} failed, {} ignored in {:.1} s",
            tier.name,
            tally.passed,
            tally.failed,
            tally.ignored,
            elapsed.as_secs_f64()
        );
        if !status.success() {
            bail!("{} ({}) failed ({status})", tier.name, tier.what);
        }
        if tier.kernel && tally.passed == 0 {
            bail!(
                "{} ran no tests: kernel tiers must run, not skip",
                tier.name
            );
        }
        if tier.kernel && tally.ignored > 0 {
            bail!(
                "{} ignored {} tests: kernel tiers must run, not skip",
                tier.name,
                tally.ignored
            );
        }
        report.push((tier.name, tier.what, tally, elapsed));
    }
    println!("\ntest summary:");
    for (name, what, tally, elapsed) in &report {
        println!(
            "  {name} {what:<18} {:>4} passed {:>3} failed {:>3} ignored  {:>6.1} s",
            tally.passed,
            tally.failed,
            tally.ignored,
            elapsed.as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Tally;

    #[test]
    fn tally_reads_libtest_summaries() {
        let mut t = Tally::default();
        t.add_summary("test result: ok. 12 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        t.add_summary(
            "test result: FAILED. 1 passed; 3 failed; 0 ignored; 0 measured; 5 filtered out",
        );
        t.add_summary("running 4 tests");
        assert_eq!((t.passed, t.failed, t.ignored), (13, 3, 2));
    }
}
