//! napi's link setup, and the SQLite functions of native/sqlite/ (C, against Debian's
//! libsqlite3-dev headers) compiled into the addon, whose entry point lib.rs exports.
fn main() {
    napi_build::setup();
    println!("cargo:rerun-if-changed=sqlite/tc_rows.c");
    println!("cargo:rerun-if-changed=sqlite/tc_group.c");
    cc::Build::new()
        .file("sqlite/tc_rows.c")
        .file("sqlite/tc_group.c")
        .opt_level(2)
        .warnings_into_errors(true)
        .extra_warnings(true)
        .compile("tc_rows");
}
