//! Telling that a file did not change without reading it.
//!
//! A [`Stamp`] is what `stat` says about a file: device, inode, size, and modification and
//! status-change times with nanoseconds. An atomic rename (how controllers, editors and
//! Kubernetes ConfigMap mounts replace files) gives a new inode; a write in place moves
//! mtime and ctime; `touch -d` or a restored mtime still moves ctime, which nothing but
//! the kernel sets. The one blind spot is two writes of the same size to the same inode
//! within one tick of the file system's clock (a few milliseconds): both leave the same
//! times. As git does with its index, a file whose times are that recent when it is read is
//! given no stamp ("racy"), so the next scan reads it again and compares the text.

use std::fs::Metadata;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How recent a change must be for its stamp not to be trusted: far more than any file
/// system clock tick, and short enough that a file is re-read only a few times.
pub(crate) const RACY: Duration = Duration::from_secs(2);

/// A file's identity and change times as `stat` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    /// Nanoseconds since the Unix epoch.
    mtime: i128,
    ctime: i128,
}

impl Stamp {
    /// The stamp of a file stat'ed at `now`; `None` when it changed less than `racy` before
    /// (or after: a clock step), as a change in the same clock tick could go unseen.
    pub(crate) fn of(meta: &Metadata, now: SystemTime, racy: Duration) -> Option<Stamp> {
        let stamp = Stamp::from_metadata(meta)?;
        let cutoff = nanos(now)? - i128::try_from(racy.as_nanos()).ok()?;
        (stamp.mtime < cutoff && stamp.ctime < cutoff).then_some(stamp)
    }

    #[cfg(unix)]
    fn from_metadata(meta: &Metadata) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let time = |secs: i64, ns: i64| i128::from(secs) * 1_000_000_000 + i128::from(ns);
        Some(Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
        })
    }

    /// Without inodes and ctime, size and mtime are all there is.
    #[cfg(not(unix))]
    fn from_metadata(meta: &Metadata) -> Option<Stamp> {
        let mtime = nanos(meta.modified().ok()?)?;
        Some(Stamp {
            dev: 0,
            ino: 0,
            len: meta.len(),
            mtime,
            ctime: mtime,
        })
    }
}

fn nanos(t: SystemTime) -> Option<i128> {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).ok(),
        Err(e) => i128::try_from(e.duration().as_nanos()).ok().map(|n| -n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_changed_just_now_has_no_stamp_and_an_old_one_has() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.yaml");
        std::fs::write(&f, "a: 1").unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        assert_eq!(Stamp::of(&meta, SystemTime::now(), RACY), None);
        let later = SystemTime::now() + Duration::from_secs(60);
        let stamp = Stamp::of(&meta, later, RACY).expect("a minute later it is settled");
        assert_eq!(Stamp::of(&meta, later, RACY), Some(stamp));
    }
}
