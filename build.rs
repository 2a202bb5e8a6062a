//! Link flags for the loadable extension.
//!
//! SQLite may load extensions with global symbol visibility, and the `.so` exports the
//! `cxxbridge1$...` symbols of usearch's C++ bridge. `-Bsymbolic` binds our own calls to
//! our own copies so that two extensions built with different cxx versions cannot collide.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic");
    println!("cargo:rerun-if-changed=build.rs");
}
