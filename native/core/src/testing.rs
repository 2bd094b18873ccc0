//! Helpers of the unit tests only.

/// Whether a test that needs root (bpf(), AF_PACKET, namespaces; `needs` says which) can run:
/// without root it says so and passes, except under CI=true, where every privileged test must
/// run.
pub fn privileged(name: &str, needs: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{name} needs root ({needs}) and cannot be skipped under CI=true");
    eprintln!("skipped {name}: needs root ({needs})");
    false
}
