//! Each chapter of docs/ included as documentation, so `cargo test` runs its
//! Rust code blocks as doctests (see lib.rs).
