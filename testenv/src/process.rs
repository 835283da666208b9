//! Child processes that cannot outlive this one.
//!
//! * Each child leads its own process group and is ended with `SIGKILL` on the whole group, then reaped.
//! * Each child gets `prctl(PR_SET_PDEATHSIG, SIGKILL)`, so the kernel kills it if this process dies without
//!   running destructors. Linux delivers that signal when the *thread* that forked the child exits, so all children
//!   are forked by one spawner thread that lives as long as the process.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use crate::Error;

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// The process-lifetime spawner thread's inbox (`None` if the thread could not be started).
fn spawner() -> Option<&'static Mutex<mpsc::Sender<SpawnRequest>>> {
    static SPAWNER: OnceLock<Option<Mutex<mpsc::Sender<SpawnRequest>>>> = OnceLock::new();
    SPAWNER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<SpawnRequest>();
            let started = std::thread::Builder::new()
                .name("tanium-testenv-spawner".into())
                .spawn(move || {
                    // Never returns while the process lives: the Sender is in a static.
                    while let Ok((mut command, reply)) = rx.recv() {
                        let _ = reply.send(spawn_here(&mut command));
                    }
                });
            match started {
                Ok(_) => Some(Mutex::new(tx)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the spawner thread; children get no parent-death signal");
                    None
                }
            }
        })
        .as_ref()
}

fn spawn_here(command: &mut Command) -> io::Result<Child> {
    command.process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
        // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe calls
        // (prctl, getppid) and reads errno.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl: then nobody would kill us.
                if libc::getppid() != parent {
                    return Err(io::Error::other("parent exited before exec"));
                }
                Ok(())
            });
        }
    }
    command.spawn()
}

/// Spawns through the spawner thread (falling back to this thread if it is unavailable).
fn spawn(mut command: Command) -> io::Result<Child> {
    let Some(inbox) = spawner() else {
        return spawn_here(&mut command);
    };
    let (reply_tx, reply_rx) = mpsc::channel();
    let sent = match inbox.lock() {
        Ok(tx) => tx.send((command, reply_tx)).map_err(|e| e.0.0),
        Err(poisoned) => poisoned
            .into_inner()
            .send((command, reply_tx))
            .map_err(|e| e.0.0),
    };
    match sent {
        Ok(()) => reply_rx
            .recv()
            .map_err(|_| io::Error::other("the spawner thread is gone"))?,
        Err(mut command) => spawn_here(&mut command),
    }
}

/// A running child process, killed with its process group on drop.
pub(crate) struct Supervised {
    name: &'static str,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Supervised {
    /// Starts `program args...` in `cwd`, stdout and stderr appended to `log`.
    pub fn start(
        name: &'static str,
        program: &Path,
        args: &[OsString],
        cwd: &Path,
        log: PathBuf,
    ) -> Result<Self, Error> {
        let out =
            File::create(&log).map_err(|e| Error::io(format!("creating {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::io(format!("opening {}", log.display()), e))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child =
            spawn(command).map_err(|e| Error::io(format!("starting {}", program.display()), e))?;
        tracing::debug!(name, pid = child.id(), log = %log.display(), "started");
        Ok(Supervised {
            name,
            child,
            log,
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended (it is then reaped).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// `Err(ProcessExited)` if the process has ended.
    pub fn ensure_running(&mut self) -> Result<(), Error> {
        match self.exited() {
            Some(status) => Err(Error::ProcessExited {
                process: self.name,
                status: status.to_string(),
                log_tail: self.log_tail(),
            }),
            None => Ok(()),
        }
    }

    /// The last lines of the process's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, 30)
    }

    /// `SIGKILL` to the process group, then wait for the process. Idempotent.
    pub fn kill(&mut self) {
        if self.exited.is_some() {
            return;
        }
        // The group leader is not reaped yet (even if it exited, it is a zombie), so its pid still names our group.
        if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: plain syscall; pgid > 0, so this signals exactly that process group.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        match self.child.wait() {
            Ok(status) => {
                tracing::debug!(name = self.name, pid = self.child.id(), %status, "stopped");
                self.exited = Some(status);
            }
            Err(e) => tracing::warn!(name = self.name, error = %e, "waiting for a killed process"),
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a file (reads at most its last 64 KiB).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
