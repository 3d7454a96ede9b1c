//! Rebuilds the control plane when the console bundle (`web/dist`, embedded by
//! `http::console`) changes: rust-embed's `include_bytes!` notices edited files, but not files
//! added or removed (a new Vite build renames every hashed asset).
#![allow(clippy::print_stdout)]

fn main() {
    println!("cargo::rerun-if-changed=../web/dist");
}
