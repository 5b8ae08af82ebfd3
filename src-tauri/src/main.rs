// In release builds on Windows, don't open a console window for the app.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod app;
mod cli;
mod commands;
mod signals;
mod tray;

fn main() -> std::process::ExitCode {
    cli::main()
}
