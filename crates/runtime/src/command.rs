//! Running external programs (useradd, apt-get, systemctl, ...) safely.
//!
//! Always an argument vector, never a shell, so no value from a task is ever interpreted;
//! always a clean, fixed environment, so the caller's locale cannot change what we parse, plus
//! only the variables a caller names with `inherit_env` (the task's proxy settings for apt);
//! output captured and bounded, so a chatty apt run cannot eat the memory of a small host.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// The PATH every command runs with.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// By default keep the last 64 KiB of each stream: errors are at the end.
const DEFAULT_LIMIT: usize = 64 * 1024;

/// A command to run.
#[derive(Clone, Debug)]
pub struct Command {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    timeout: Option<Duration>,
    stdin: Option<Vec<u8>>,
    limit: usize,
    changes: bool,
}

/// What a finished command left behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// The exit code, or 128 + signal number when a signal ended it.
    pub rc: i32,
    /// The tail of standard output (lossy UTF-8).
    pub stdout: String,
    /// The tail of standard error (lossy UTF-8).
    pub stderr: String,
    /// The command ran past its timeout and was killed.
    pub timed_out: bool,
    /// Output was longer than the limit; only the tail is kept.
    pub truncated: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        self.rc == 0 && !self.timed_out
    }

    /// The last `lines` lines of stdout and stderr together, for error messages.
    pub fn tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self
            .stdout
            .lines()
            .chain(self.stderr.lines())
            .filter(|l| !l.trim().is_empty())
            .collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `Ok` when `cmd` succeeded; otherwise the error a module shows for a command that had
    /// to succeed: `CMD failed (rc N): ` and the last three lines of its output.
    pub fn check(&self, cmd: &Command) -> Result<(), String> {
        if self.success() {
            return Ok(());
        }
        Err(format!(
            "{} failed (rc {}): {}",
            cmd.display(),
            self.rc,
            self.tail(3)
        ))
    }
}

impl Command {
    pub fn new(program: &str) -> Command {
        Command {
            program: program.to_string(),
            args: Vec::new(),
            env: vec![
                ("PATH".into(), PATH.into()),
                ("LC_ALL".into(), "C".into()),
                ("LANG".into(), "C".into()),
            ],
            timeout: None,
            stdin: None,
            limit: DEFAULT_LIMIT,
            changes: false,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Command {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds one variable to the fixed environment (e.g. `DEBIAN_FRONTEND=noninteractive`).
    pub fn env(mut self, key: &str, value: &str) -> Command {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    /// Passes these variables on from this process's environment (the task's `environment:`)
    /// when they are set, e.g. the proxy settings apt honours. Names only, never values from
    /// a task's parameters; the fixed ones (PATH, LC_ALL, LANG) cannot be overridden this way.
    pub fn inherit_env(mut self, names: &[&str]) -> Command {
        for name in names {
            if ["PATH", "LC_ALL", "LANG"].contains(name) {
                continue;
            }
            if let Some(value) = std::env::var_os(name) {
                let value = value.to_string_lossy().into_owned();
                self = self.env(name, &value);
            }
        }
        self
    }

    /// The value a variable will have in the command's environment, if any.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Kills the command (its whole process group) when it runs longer than this.
    pub fn timeout(mut self, timeout: Duration) -> Command {
        self.timeout = Some(timeout);
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Command {
        self.stdin = Some(data.into());
        self
    }

    /// Marks a command that may change the host (apt-get install, useradd, systemctl stop):
    /// once one has started, an answer after a panic says `changed: true`.
    pub fn changes_system(mut self) -> Command {
        self.changes = true;
        self
    }

    pub fn output_limit(mut self, bytes: usize) -> Command {
        self.limit = bytes.max(1);
        self
    }

    /// The command line as a person would type it, for messages.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(self.args.iter())
            .map(|a| {
                if !a.is_empty()
                    && a.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c))
                {
                    a.clone()
                } else {
                    format!("'{}'", a.replace('\'', r"'\''"))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs the command to the end. `Err` only when it could not be started at all.
    pub fn run(&self) -> Result<Output, String> {
        let mut cmd = std::process::Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if self.timeout.is_some() {
            // Its own process group, so a timeout kills the children too.
            cmd.process_group(0);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.program))?;
        if self.changes {
            crate::entry::note_change();
        }

        if let (Some(data), Some(mut pipe)) = (self.stdin.clone(), child.stdin.take()) {
            // A writer thread: a child that does not read its input must not block us.
            thread::spawn(move || {
                let _ = pipe.write_all(&data);
            });
        }
        let limit = self.limit;
        let out = child
            .stdout
            .take()
            .map(|p| thread::spawn(move || read_tail(p, limit)));
        let err = child
            .stderr
            .take()
            .map(|p| thread::spawn(move || read_tail(p, limit)));

        let (status, timed_out) = wait(&mut child, self.timeout)
            .map_err(|e| format!("waiting for {} failed: {e}", self.program))?;
        let (stdout, cut_out) = out.and_then(|h| h.join().ok()).unwrap_or_default();
        let (stderr, cut_err) = err.and_then(|h| h.join().ok()).unwrap_or_default();
        let rc = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        Ok(Output {
            rc,
            stdout,
            stderr,
            timed_out,
            truncated: cut_out || cut_err,
        })
    }
}

fn wait(
    child: &mut Child,
    timeout: Option<Duration>,
) -> std::io::Result<(std::process::ExitStatus, bool)> {
    let Some(timeout) = timeout else {
        return Ok((child.wait()?, false));
    };
    let deadline = Instant::now() + timeout;
    // Poll with a growing interval: short commands finish without a noticeable delay,
    // long ones do not spin.
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, false));
        }
        if Instant::now() >= deadline {
            break;
        }
        thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    // The process group we created for this child (its id is the child's pid).
    let group = Pid::from_raw(child.id() as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let grace = Instant::now() + Duration::from_secs(3);
    while Instant::now() < grace {
        if let Some(status) = child.try_wait()? {
            return Ok((status, true));
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = killpg(group, Signal::SIGKILL);
    Ok((child.wait()?, true))
}

/// Reads a pipe to its end, keeping only the last `limit` bytes.
fn read_tail(mut pipe: impl Read, limit: usize) -> (String, bool) {
    let mut tail: VecDeque<u8> = VecDeque::new();
    let mut cut = false;
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                tail.extend(&buf[..n]);
                if tail.len() > limit {
                    let extra = tail.len() - limit;
                    tail.drain(..extra);
                    cut = true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let bytes: Vec<u8> = tail.into_iter().collect();
    (String::from_utf8_lossy(&bytes).into_owned(), cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_exit_code() {
        let cmd = Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = cmd.run().unwrap();
        assert_eq!(out.rc, 3);
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert!(!out.success());
        assert_eq!(out.tail(5), "out\nerr");
        assert_eq!(
            out.check(&cmd).unwrap_err(),
            format!("{} failed (rc 3): out\nerr", cmd.display())
        );
        assert_eq!(Output::default().check(&cmd), Ok(()));
    }

    #[test]
    fn arguments_are_never_interpreted_by_a_shell() {
        let out = Command::new("echo")
            .arg("$(id); rm -rf /tmp/nothing")
            .run()
            .unwrap();
        assert_eq!(out.stdout, "$(id); rm -rf /tmp/nothing\n");
    }

    #[test]
    fn the_environment_is_clean_and_fixed() {
        std::env::set_var("HOMEOPS_LEAK_TEST", "leaked");
        let out = Command::new("env")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .run()
            .unwrap();
        assert!(!out.stdout.contains("leaked"));
        assert!(out.stdout.contains("LC_ALL=C\n"));
        assert!(out.stdout.contains("DEBIAN_FRONTEND=noninteractive\n"));
    }

    #[test]
    fn named_variables_are_passed_on_when_set() {
        std::env::set_var("HOMEOPS_TEST_https_proxy", "http://127.0.0.1:3128");
        std::env::set_var("LC_ALL", "de_DE.UTF-8");
        std::env::remove_var("HOMEOPS_TEST_unset");
        let cmd = Command::new("env").inherit_env(&[
            "HOMEOPS_TEST_https_proxy",
            "HOMEOPS_TEST_unset",
            "LC_ALL",
        ]);
        let out = cmd.run().unwrap();
        assert!(
            out.stdout
                .contains("HOMEOPS_TEST_https_proxy=http://127.0.0.1:3128\n"),
            "{}",
            out.stdout
        );
        assert!(!out.stdout.contains("HOMEOPS_TEST_unset"));
        // The fixed locale stays: apt's messages are parsed in English.
        assert!(out.stdout.contains("LC_ALL=C\n"), "{}", out.stdout);
        assert_eq!(cmd.env_value("LC_ALL"), Some("C"));
    }

    #[test]
    fn output_is_bounded_to_its_tail() {
        let out = Command::new("sh")
            .args(["-c", "seq 1 100000"])
            .output_limit(64)
            .run()
            .unwrap();
        assert!(out.truncated);
        assert!(out.stdout.len() <= 64);
        assert!(out.stdout.ends_with("99999\n100000\n"));
    }

    #[test]
    fn a_timeout_kills_the_command_and_its_children() {
        let start = Instant::now();
        let out = Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30; echo never"])
            .timeout(Duration::from_millis(200))
            .run()
            .unwrap();
        assert!(out.timed_out);
        assert!(!out.success());
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn stdin_is_fed() {
        let out = Command::new("cat").stdin("hello").run().unwrap();
        assert_eq!(out.stdout, "hello");
    }

    #[test]
    fn a_missing_program_is_an_error_naming_it() {
        let err = Command::new("/nonexistent/tool").run().unwrap_err();
        assert!(err.contains("cannot run /nonexistent/tool"), "{err}");
    }

    #[test]
    fn display_quotes_what_a_shell_would_split() {
        let c = Command::new("useradd").args(["--comment", "Loki service", "loki"]);
        assert_eq!(c.display(), "useradd --comment 'Loki service' loki");
    }
}
