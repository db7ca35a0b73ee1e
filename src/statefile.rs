//! The runtime state file: the last applied virtual server table (services
//! and fwmark rules, the same JSON as the control socket's `dump`), written
//! atomically after every applied change and read back at start-up, so
//! changes made with `rvsadm` since the start survive a restart (what
//! `ipvsadm-save` at stop and `ipvsadm-restore` at start do for the kernel
//! table, but without a window in which a crash loses them).
//!
//! Writes go to a temporary file in the same directory, are fsync'ed, then
//! renamed over the state file and the directory is fsync'ed: a reader sees
//! the old or the new table, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fwmark::FwmarkRule;
use crate::service::ServiceConf;

/// What the state file holds. Extra keys (`"ok"` of a saved `dump` answer)
/// are ignored, so `rvsadm`'s dump output is a valid state file; `services`
/// must be there (an empty object is a damaged file, not an empty table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub services: Vec<ServiceConf>,
    #[serde(default)]
    pub fwmark_rules: Vec<FwmarkRule>,
    /// The connection-sync daemons running when it was written. A
    /// restarted rvsd starts a *backup* daemon with them (a director that
    /// has just started has nothing to offer as master, and keepalived
    /// only restarts daemons when its VRRP state changes).
    #[serde(default)]
    pub sync: Vec<SavedDaemon>,
}

/// A running sync daemon, as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedDaemon {
    pub state: crate::sync::Role,
    pub conf: crate::sync::SyncConf,
}

/// Where the state goes.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Atomically replace the state file with this table.
    pub fn write(
        &self,
        services: &[ServiceConf],
        rules: &[FwmarkRule],
        sync: &[SavedDaemon],
    ) -> std::io::Result<()> {
        let mut text = serde_json::to_vec_pretty(&serde_json::json!({
            "services": services,
            "fwmark_rules": rules,
            "sync": sync,
        }))
        .map_err(std::io::Error::other)?;
        text.push(b'\n');
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = self
            .path
            .file_name()
            .ok_or_else(|| std::io::Error::other("state file path has no file name"))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp{}", std::process::id()));
        let tmp = dir.join(tmp_name);
        let res = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &self.path)?;
            // The rename itself is durable only once the directory is.
            File::open(&dir)?.sync_all()
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    /// The saved table: `Ok(None)` when there is no state file yet, `Err`
    /// with the reason when it cannot be read or parsed.
    pub fn read(&self) -> Result<Option<State>, String> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", self.path.display())),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Move a state file that could not be used out of the way (to
    /// `PATH.bad-UNIXTIME`), so the next write does not destroy it and the
    /// operator can look at it; returns where it went.
    pub fn set_aside(&self) -> std::io::Result<PathBuf> {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut to = self.path.clone().into_os_string();
        to.push(format!(".bad-{secs}"));
        let to = PathBuf::from(to);
        fs::rename(&self.path, &to)?;
        Ok(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rvs-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn svc(json: &str) -> ServiceConf {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_written_table_reads_back_and_no_temporary_file_stays() {
        let d = dir("rw");
        let sf = StateFile::new(d.join("state.json"));
        assert_eq!(sf.read(), Ok(None));
        let s = vec![svc(
            r#"{"proto":"tcp","vip":"10.0.0.100","port":80,"dests":[{"ip":"10.0.1.11"}]}"#,
        )];
        sf.write(&s, &[], &[]).unwrap();
        sf.write(&s, &[], &[]).unwrap();
        let back = sf.read().unwrap().unwrap();
        assert_eq!(back.services, s);
        assert!(back.fwmark_rules.is_empty());
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_dump_answer_is_a_state_file_but_damaged_ones_are_refused() {
        let d = dir("bad");
        let sf = StateFile::new(d.join("state.json"));
        fs::write(sf.path(), r#"{"ok":true,"services":[],"fwmark_rules":[]}"#).unwrap();
        assert_eq!(sf.read().unwrap().unwrap().services, vec![]);
        for bad in ["", "{", "{}", r#"{"services":[{"proto":"tcp""#, "\0\0\0"] {
            fs::write(sf.path(), bad).unwrap();
            let e = sf.read().unwrap_err();
            assert!(e.contains("state.json"), "{bad:?}: {e}");
        }
        let to = sf.set_aside().unwrap();
        assert!(!sf.path().exists());
        assert_eq!(fs::read(&to).unwrap(), b"\0\0\0");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_write_into_a_missing_directory_fails_and_leaves_nothing() {
        let d = dir("missing");
        let sf = StateFile::new(d.join("nope/state.json"));
        assert!(sf.write(&[], &[], &[]).is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}
