//! `shopdesk-bench [--json] [--quick]`: measures checkout and the job queue
//! on fresh temporary databases and prints the figures with the targets
//! they are held to.

use std::process::ExitCode;

use shopdesk_bench::{run, run_one, Sizes};

const USAGE: &str = "\
usage: shopdesk-bench [--json] [--quick] [--only MEASUREMENT]

  --json              print one JSON object instead of a table
  --quick             smaller counts, for a smoke run (about half a
                      minute; the full run takes about two minutes)
  --only MEASUREMENT  run one measurement alone (to profile or repeat it):
                      raw-normal, raw-full, enqueue, enqueue-batch, drains,
                      pickup, checkout, sync-email

Temporary databases go under $TMPDIR (default /tmp): point it at the disk
to measure. Progress goes to stderr.";

fn main() -> ExitCode {
    let mut json = false;
    let mut sizes = Sizes::full();
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--quick" => sizes = Sizes::quick(),
            "--only" => match args.next() {
                Some(name) => only = Some(name),
                None => {
                    eprintln!("--only needs a measurement name\n\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
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
    if let Some(name) = only {
        return match run_one(&name, &sizes) {
            Ok(figures) => {
                let object: serde_json::Map<String, serde_json::Value> = figures
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                    .collect();
                println!("{}", serde_json::Value::Object(object));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench failed: {e}");
                ExitCode::FAILURE
            }
        };
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_usage_names_every_measurement() {
        for name in shopdesk_bench::MEASUREMENTS {
            assert!(super::USAGE.contains(name), "{name}");
        }
    }
}
