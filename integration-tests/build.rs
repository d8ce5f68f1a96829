//! Compiles `c/keeper.c`, the C library the FFI custody tests and example hand pointers to,
//! into a static library linked into this crate's targets.

fn main() {
    println!("cargo:rerun-if-changed=c/keeper.c");
    cc::Build::new()
        .file("c/keeper.c")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("keeper");
}
