//! The `intercept` binary: parse the command line, set up logging, start
//! the daemon (XDP attached, port bound: errors still reach the terminal),
//! then go to the background if asked, write the pid file and serve until
//! SIGINT/SIGTERM. Exit 0 after a clean stop (XDP detached).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use intercept_user::{cli::Cli, daemon::Intercept};
use tcpcopy_runtime::{
    privilege::{self, Capability},
    process::{PidFile, StopSignal, daemonize, init_logging},
};

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "doctor") {
        // `intercept doctor` takes intercept's own options.
        let argv = std::iter::once("intercept doctor".into()).chain(std::env::args_os().skip(2));
        let cli = Cli::parse_from(argv);
        let report = intercept_user::doctor::run(&cli);
        print!("{report}");
        return if report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let cli = Cli::parse();
    if let Err(e) = init_logging(cli.log.as_deref()) {
        eprintln!("intercept: error: {e:#}");
        return ExitCode::FAILURE;
    }
    let logs_to_file = cli.log.is_some();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if logs_to_file {
                tracing::error!("{e:#}");
            }
            eprintln!("intercept: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Set up (program attached, port bound): keeps only what serving still
/// uses, while the process has one thread: nothing, but CAP_NET_ADMIN to
/// remove a TC program attached as a clsact filter at exit, and on older
/// kernels a BPF capability to use the program's maps.
fn give_up_privileges(intercept: &Intercept) -> anyhow::Result<()> {
    let keep: &[Capability] = if intercept.detaches_through_netlink() {
        &[Capability::CAP_NET_ADMIN]
    } else {
        &[]
    };
    privilege::keep_only(keep).context("giving up privileges")?;
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // Relative to where we were started, before -d moves us to /.
    let pid_path = match &cli.pid_file {
        Some(p) => Some(std::path::absolute(p).context("resolving the pid file path")?),
        None => None,
    };
    // Before any work: a SIGINT/SIGTERM from now on stops us cleanly (the
    // stop is seen at the first turn of the run loop), never kills us
    // half set up. The handlers survive the fork of -d.
    let stop = StopSignal::on_signals().context("installing signal handlers")?;
    let intercept = Intercept::start(cli.daemon_config()).context("starting intercept")?;
    if cli.daemon {
        if cli.log.is_none() {
            tracing::warn!("running in the background without -l: the log goes to /dev/null");
        }
        // SAFETY: no thread has been started; the child keeps every fd
        // (program, links, ring, listener).
        unsafe { daemonize() }.context("going to the background")?;
    }
    let _pid_file = pid_path
        .as_deref()
        .map(PidFile::create)
        .transpose()
        .context("writing the pid file")?;
    give_up_privileges(&intercept)?;
    tracing::info!(pid = std::process::id(), "serving tcpcopy");
    intercept.run(stop).context("serving")?;
    Ok(())
}
