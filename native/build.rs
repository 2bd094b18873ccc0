//! napi's link setup, and the SQLite table function of native/sqlite/ (C, against Debian's
//! libsqlite3-dev headers) compiled into the addon, whose entry point lib.rs exports.
fn main() {
    napi_build::setup();
    println!("cargo:rerun-if-changed=sqlite/tc_rows.c");
    cc::Build::new()
        .file("sqlite/tc_rows.c")
        .opt_level(2)
        .warnings_into_errors(true)
        .extra_warnings(true)
        .compile("tc_rows");
}
