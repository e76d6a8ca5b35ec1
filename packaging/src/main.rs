//! `tcpcopy-packaging manuals DIR`: writes the man pages (`DIR/man/`) and
//! shell completions (`DIR/completions/<shell>/`) of both daemons, from
//! their clap definitions. `cargo xtask dist` runs it; see the library.

use std::{path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [task, dir] = args.as_slice() else {
        eprintln!("usage: tcpcopy-packaging manuals DIR");
        return ExitCode::from(2);
    };
    if task != "manuals" {
        eprintln!("tcpcopy-packaging: unknown task {task:?}; usage: tcpcopy-packaging manuals DIR");
        return ExitCode::from(2);
    }
    match tcpcopy_packaging::write_manuals(&PathBuf::from(dir)) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tcpcopy-packaging: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
