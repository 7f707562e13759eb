//! A filesystem that forgets what was never synced, for power-cut tests.
//!
//! A `kill -9` leaves the page cache alone, so it cannot catch a missing or misplaced fsync.
//! [`PowerFs`] mounts a FUSE filesystem (held in memory by this process) whose every change
//! stays in a volatile layer until the file, or for names the directory, is fsynced
//! (`state.rs` has the exact rules). [`PowerFs::cut`] is the power cut: it unmounts, throws
//! the volatile layer away (optionally tearing the last unsynced write at a page boundary)
//! and mounts what was durable at the same place.
//!
//! Mounting needs `/dev/fuse` and root (or `CAP_SYS_ADMIN`): the pure-Rust mount of `fuser`
//! calls mount(2) itself, no `fusermount` helper.

mod fuse;
mod state;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuser::{BackgroundSession, Config, MountOption};

/// The filesystem model itself, for tests that drive it directly (no FUSE, no mount): the
/// spool's model test puts it beneath the spool through `SpoolFs`.
pub use state::{Attr, CutReport, Ino, Kind, ROOT, State as Model, Stats};

pub struct PowerFs {
    mountpoint: PathBuf,
    state: Arc<Mutex<state::State>>,
    session: Option<BackgroundSession>,
}

impl PowerFs {
    /// Mounts an empty filesystem at `mountpoint` (an existing, empty directory).
    pub fn mount(mountpoint: &Path) -> io::Result<PowerFs> {
        let mut fs = PowerFs {
            // umount(2) needs the path the kernel knows, without symlinks.
            mountpoint: mountpoint.canonicalize()?,
            state: Arc::new(Mutex::new(state::State::default())),
            session: None,
        };
        fs.mount_again()?;
        Ok(fs)
    }

    fn mount_again(&mut self) -> io::Result<()> {
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("frazil-powerfs".into())];
        let fs = fuse::PowerFuse::new(self.state.clone());
        let session = fuser::spawn_mount(fs, &self.mountpoint, &config).map_err(|e| {
            io::Error::new(e.kind(), format!("mount the power-cut filesystem at {}: {e}", self.mountpoint.display()))
        })?;
        self.session = Some(session);
        Ok(())
    }

    /// Unmounts with umount(2) itself, retrying while a process that just exited still releases
    /// its files, so that a busy filesystem is an error here rather than a lazy unmount.
    fn unmount(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else { return Ok(()) };
        let path = CString::new(self.mountpoint.as_os_str().as_bytes())?;
        let mut tries = 0;
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        while unsafe { libc::umount2(path.as_ptr(), 0) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBUSY) && tries < 250 {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            self.session = Some(session);
            return Err(io::Error::new(
                e.kind(),
                format!("unmount {}: {e} (close every file on it first)", self.mountpoint.display()),
            ));
        }
        // The session loop ends once the kernel closes the device; fuser's own unmount then
        // finds nothing mounted (an error we expect and ignore).
        let _ = session.umount_and_join();
        Ok(())
    }

    /// The power cut. Every process using the filesystem must have exited and every file on it
    /// been closed. `tear`: a random number choosing how much of the last unsynced write lands.
    pub fn cut(&mut self, tear: Option<u64>) -> io::Result<CutReport> {
        self.unmount()?;
        let report = self.state.lock().unwrap_or_else(|p| p.into_inner()).cut(tear);
        self.mount_again()?;
        Ok(report)
    }

    pub fn stats(&self) -> Stats {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).stats.clone()
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for PowerFs {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            eprintln!("powerfs: {e}");
        }
    }
}
