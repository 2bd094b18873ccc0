//! One writer per database: an exclusive `flock(2)` on a lock file beside it. The kernel
//! releases the lock when the holder's last descriptor of that open file closes, so a recorder
//! that is killed never leaves a stale lock. `flock`, not `fcntl`: SQLite takes POSIX `fcntl`
//! locks on the database itself, and a process loses all its POSIX locks on a file when it
//! closes any descriptor of it; `flock` locks belong to the open file description
//! (<https://man7.org/linux/man-pages/man2/flock.2.html>).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Takes the lock on `path` (created, mode 0644, if missing) without waiting: `Some(file)` while
/// this process holds it, `None` when another process does. A holder removes the file before it
/// releases the lock, so a lock won on a file no longer at `path` is given up and taken again on
/// the new one. A lock file this user cannot write (left by another user) is locked read-only.
pub fn try_lock(path: &Path) -> io::Result<Option<File>> {
    loop {
        let f = match OpenOptions::new().read(true).write(true).create(true).mode(0o644).open(path) {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && path.exists() => File::open(path)?,
            other => other?,
        };
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(None);
            }
            return Err(e);
        }
        let held = f.metadata()?;
        match std::fs::metadata(path) {
            Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => return Ok(Some(f)),
            _ => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_released() {
        let dir = std::env::temp_dir().join(format!("tc-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.db.lock");
        let first = try_lock(&p).unwrap().expect("first lock");
        // A second open file description of the same file conflicts, even in this process.
        assert!(try_lock(&p).unwrap().is_none());
        std::fs::remove_file(&p).unwrap();
        drop(first);
        assert!(try_lock(&p).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
