//! `shopdesk-bench [--json] [--quick]`: measures checkout and the job queue
//! on fresh temporary databases and prints the figures with the targets
//! they are held to.

use std::process::ExitCode;

use shopdesk_bench::{run, Sizes};

const USAGE: &str = "\
usage: shopdesk-bench [--json] [--quick]

  --json   print one JSON object instead of a table
  --quick  smaller counts, for a smoke run (about a minute)

Temporary databases go under $TMPDIR (default /tmp): point it at the disk
to measure. Progress goes to stderr.";

fn main() -> ExitCode {
    let mut json = false;
    let mut sizes = Sizes::full();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => json = true,
            "--quick" => sizes = Sizes::quick(),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let started = std::time::Instant::now();
    let mut progress = |what: &str| {
        eprintln!("[{:6.1} s] {what}", started.elapsed().as_secs_f64());
    };
    match run(&sizes, &mut progress) {
        Ok(figures) => {
            eprintln!("[{:6.1} s] done", started.elapsed().as_secs_f64());
            if json {
                println!("{}", figures.to_json_string());
            } else {
                print!("{}", figures.to_table());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}
