fn main() {
    // The UI is built into ../ui/dist before the crate; new or changed files
    // there must re-embed the frontend.
    println!("cargo:rerun-if-changed=../ui/dist");
    println!("cargo:rerun-if-changed=../tauri.conf.json");
    println!("cargo:rerun-if-changed=icons");
    tauri_build::try_build(tauri_build::Attributes::new().config_path("../tauri.conf.json"))
        .expect("failed to run the Tauri build script");
}
