//! `cargo xtask bench intercept`: builds the `intercept` binary and the
//! `bench-intercept` driver (tests crate) in release mode and runs the
//! driver, which measures the real binary in the lab (see
//! `tests/src/bin/bench_intercept.rs` for the method), for both
//! deployments: XDP on an assistant and TC egress on the target.

use std::process::Command;

#[derive(clap::Args)]
pub struct InterceptBench {
    /// Reply frames per run.
    #[arg(long, default_value_t = 2_000_000)]
    frames: u64,
    /// Offered rates in frames per second (comma list), `max` for unpaced
    /// [default: 100000,max for veth; 1000000,max for test-run].
    #[arg(long)]
    rates: Option<String>,
    /// Frame source: `veth` (a packet socket on the target's NIC, the lab's
    /// real path), `test-run` (BPF_PROG_TEST_RUN of intercept's attached
    /// program on one frame, repeated: XDP onwards only), or `both`.
    #[arg(long, default_value = "both", value_parser = ["veth", "test-run", "both"])]
    source: String,
    /// tcpcopy peers connected to intercept.
    #[arg(long, default_value_t = 2)]
    peers: usize,
    /// Sessions (routes), spread over the peers.
    #[arg(long, default_value_t = 256)]
    sessions: u16,
    /// intercept's ring buffer size (e.g. 4M, 64M).
    #[arg(long, default_value = "4M")]
    ring_size: String,
    /// Deployment: `assistant` (XDP on an assistant host), `egress` (TC
    /// egress on the target, packet-socket frames only), or `both`.
    #[arg(long, default_value = "both", value_parser = ["assistant", "egress", "both"])]
    path: String,
}

pub fn run(args: &InterceptBench) -> anyhow::Result<()> {
    let release = super::build_release(
        "intercept",
        &[
            ("intercept-user", "intercept"),
            ("tcpcopy-tests", "bench-intercept"),
        ],
    )?;
    let sources: &[(&str, &str)] = match args.source.as_str() {
        "veth" => &[("veth", "100000,max")],
        "test-run" => &[("test-run", "1000000,max")],
        _ => &[("veth", "100000,max"), ("test-run", "1000000,max")],
    };
    let paths: &[&str] = match args.path.as_str() {
        "assistant" => &["assistant"],
        "egress" => &["egress"],
        _ => &["assistant", "egress"],
    };
    // The egress path takes the target's own frames (test-run frames enter at XDP).
    let runs = paths.iter().flat_map(|path| {
        sources
            .iter()
            .filter(move |(source, _)| *path == "assistant" || *source == "veth")
            .map(move |s| (*path, *s))
    });
    for (path, (source, default_rates)) in runs {
        let rates = args.rates.as_deref().unwrap_or(default_rates);
        println!();
        let mut cmd = Command::new(release.join("bench-intercept"));
        cmd.arg("--intercept")
            .arg(release.join("intercept"))
            .args(["--source", source, "--rates", rates, "--path", path])
            .args(["--frames", &args.frames.to_string()])
            .args(["--peers", &args.peers.to_string()])
            .args(["--sessions", &args.sessions.to_string()])
            .args(["--ring-size", &args.ring_size]);
        super::run_driver(cmd, &format!("bench-intercept ({path}, {source})"))?;
    }
    Ok(())
}
