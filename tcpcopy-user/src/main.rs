//! The `tcpcopy` binary: parse the command line, set up logging, start
//! (capture attached or capture file opened, intercepts connected: errors
//! still reach the terminal), then go to the background if asked, write
//! the pid file and run until SIGINT/SIGTERM, or offline until the file is
//! replayed (the summary goes to stdout). Exit 0 after a clean stop: every
//! open session reset, XDP detached.

use std::{io::Write, process::ExitCode};

use anyhow::Context;
use clap::Parser;
use tcpcopy_runtime::{
    privilege::{self, Capability},
    process::{PidFile, StopSignal, daemonize, init_logging},
};
use tcpcopy_user::{cli::Cli, daemon::Tcpcopy, doctor::DoctorCli};

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "doctor") {
        return doctor();
    }
    let cli = Cli::parse();
    if let Err(e) = cli.validate() {
        eprintln!("tcpcopy: error: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = init_logging(cli.log.as_deref()) {
        eprintln!("tcpcopy: error: {e}");
        return ExitCode::FAILURE;
    }
    let logs_to_file = cli.log.is_some();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if logs_to_file {
                tracing::error!("{e:#}");
            }
            eprintln!("tcpcopy: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `tcpcopy doctor ...`: the checks, printed; exit 1 if any failed.
fn doctor() -> ExitCode {
    let argv = std::iter::once("tcpcopy doctor".into()).chain(std::env::args_os().skip(2));
    let args = DoctorCli::parse_from(argv);
    if let Err(e) = args.run.validate() {
        eprintln!("tcpcopy doctor: error: {e}");
        return ExitCode::from(2);
    }
    let report = tcpcopy_user::doctor::run(&args.run, &args.probe);
    print!("{report}");
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Set up (programs attached, sockets open): keeps only what the replay
/// still uses, while the process has one thread. Sending keeps
/// CAP_NET_ADMIN: an unresolved next hop is solicited through rtnetlink
/// (RTM_NEWNEIGH), and a TC program attached as a clsact filter (kernels
/// without TCX) is detached through it at exit. Older kernels need a BPF
/// capability to read the programs' maps.
fn give_up_privileges(cli: &Cli) -> anyhow::Result<()> {
    let keep: &[Capability] = if cli.dry_run {
        &[]
    } else {
        &[Capability::CAP_NET_ADMIN]
    };
    privilege::keep_only(keep).context("giving up privileges")?;
    Ok(())
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let pid_path = match &cli.pid_file {
        Some(p) => Some(std::path::absolute(p).context("resolving the pid file path")?),
        None => None,
    };
    // Before any work: a SIGINT/SIGTERM from now on stops us cleanly (the
    // stop is seen at the first turn of the run loop), never kills us
    // half set up. The handlers survive the fork of -d.
    let stop = StopSignal::on_signals().context("installing signal handlers")?;
    let tcpcopy = Tcpcopy::start(cli).context("starting tcpcopy")?;
    match tcpcopy.attach_mode() {
        Some(mode) => tracing::info!(input = %cli.input, ?mode, "capture attached"),
        None => tracing::info!(file = %cli.input, "replaying a capture file (offline mode)"),
    }
    if cli.daemon {
        if cli.log.is_none() {
            tracing::warn!("running in the background without -l: the log goes to /dev/null");
        }
        // SAFETY: no thread has been started yet; the child keeps every fd
        // (program, links, ring, sockets).
        unsafe { daemonize() }.context("going to the background")?;
    }
    let _pid_file = pid_path
        .as_deref()
        .map(PidFile::create)
        .transpose()
        .context("writing the pid file")?;
    give_up_privileges(cli)?;
    tracing::info!(pid = std::process::id(), "replaying");
    let outcome = tcpcopy.run(stop).context("running")?;
    if let Some(summary) = &outcome.summary {
        // A closed stdout (`| head`) must not turn the summary into a panic.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(summary.as_bytes()).and_then(|()| out.flush());
        if cli.log.is_some() {
            tracing::info!("summary:\n{summary}");
        }
    }
    if let Some(e) = outcome.file_error {
        anyhow::bail!("the capture file could not be read to its end: {e}");
    }
    Ok(())
}
