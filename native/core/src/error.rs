//! The stable codes a caller sees for each kind of failure (JS reads them as `err.code`), and the
//! one way an error becomes a message: its chain of `#[source]`s joined with ": ".
//!
//! Each error type of the core says its own code (`Coded`); the binding maps `Code` to a JS
//! error once, so no code string is written anywhere else.

use std::error::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Missing CAP_NET_RAW (AF_PACKET) or CAP_BPF (the socket filter).
    Permission,
    NoInterface,
    FanoutTaken,
    BadOption,
    CidrFile,
    Ebpf,
    Syscall,
    /// A capture file that cannot be opened or read.
    Open,
    NotACapture,
    Lock,
    Thread,
}

impl Code {
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::Permission => "ERR_TC_PERMISSION",
            Code::NoInterface => "ERR_TC_NO_INTERFACE",
            Code::FanoutTaken => "ERR_TC_FANOUT_TAKEN",
            Code::BadOption => "ERR_TC_BAD_OPTION",
            Code::CidrFile => "ERR_TC_CIDR_FILE",
            Code::Ebpf => "ERR_TC_EBPF",
            Code::Syscall => "ERR_TC_SYSCALL",
            Code::Open => "ERR_TC_OPEN",
            Code::NotACapture => "ERR_TC_NOT_A_CAPTURE",
            Code::Lock => "ERR_TC_LOCK",
            Code::Thread => "ERR_TC_THREAD",
        }
    }
}

/// An error that knows its stable code.
pub trait Coded: Error {
    fn code(&self) -> Code;
}

/// The error and every `#[source]` below it, joined with ": " (the message a user reads).
pub fn message(e: &(dyn Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        s.push_str(": ");
        s.push_str(&err.to_string());
        cur = err.source();
    }
    s
}

/// The OS error number of the first `std::io::Error` in the chain, if any: how a failed syscall
/// is recognised (EPERM, EINVAL) without reading its text.
pub fn os_error(e: &(dyn Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(n) = io.raw_os_error() {
                return Some(n);
            }
        }
        cur = err.source();
    }
    None
}

/// Missing privileges: EPERM (no capability) or EACCES somewhere in the chain.
pub fn is_permission(e: &(dyn Error + 'static)) -> bool {
    matches!(os_error(e), Some(libc::EPERM) | Some(libc::EACCES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("bind(AF_PACKET) failed")]
    struct Outer {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_message_is_the_chain_of_sources_joined() {
        let e = Outer { source: std::io::Error::from_raw_os_error(libc::ENODEV) };
        assert_eq!(message(&e), format!("bind(AF_PACKET) failed: {}", std::io::Error::from_raw_os_error(libc::ENODEV)));
    }

    #[test]
    fn permission_is_found_by_the_os_error_number_not_the_text() {
        assert!(is_permission(&Outer { source: std::io::Error::from_raw_os_error(libc::EPERM) }));
        assert!(is_permission(&Outer { source: std::io::Error::from_raw_os_error(libc::EACCES) }));
        // The same words without the number are not a permission error.
        assert!(!is_permission(&Outer { source: std::io::Error::other("Operation not permitted") }));
        assert!(!is_permission(&Outer { source: std::io::Error::from_raw_os_error(libc::EINVAL) }));
    }
}
