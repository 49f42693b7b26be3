//! The rotation hook's blocking parts: run a command with a timeout, wait until a TCP port answers.
//!
//! The command is waited for by its exit, not by the end of its output: `ccr restart` leaves a detached server
//! behind that inherits whatever the command had as stdout and stderr, so reading pipes to their end would
//! hang. Output goes to an unnamed temporary file; its last line (secrets redacted) explains a failure.
//!
//! The command runs in its own process group, so that its timeout ends everything it started (the server
//! `ccr restart` spawned included), and without the Databricks secrets of our environment
//! ([`crate::secret::SECRET_ENV_VARS`]).

use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::secret::redact;

/// How often a running command and a closed port are polled.
const POLL: Duration = Duration::from_millis(50);
/// Timeout of one connection attempt to the port.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// The longest piece of the command's output quoted in an error.
const QUOTE_CHARS: usize = 200;

/// The command as it is shown in messages.
pub fn show(argv: &[String]) -> String {
    argv.join(" ")
}

fn last_line(file: &mut std::fs::File, secrets: &[&str]) -> String {
    let mut text = String::new();
    let len = file.seek(SeekFrom::End(0)).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(4096)));
    let _ = file.take(4096).read_to_string(&mut text);
    let line = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    let line: String = line.chars().take(QUOTE_CHARS).collect();
    redact(&line, secrets)
}

/// Run `argv` with `HOME=home`, stdin closed and its output captured, in a process group of its own; succeed
/// when it exits 0 within `timeout` (else the whole group is killed). Its environment is `env` when given,
/// else ours without the Databricks secret variables. `secrets`, and every secret the process knows, never
/// appear in the error.
pub fn run_command(
    argv: &[String],
    env: Option<&[(String, String)]>,
    home: &Path,
    timeout: Duration,
    secrets: &[&str],
) -> Result<()> {
    let Some((program, args)) = argv.split_first() else {
        return Err(Error::invalid("command", "must not be empty"));
    };
    let shown = show(argv);
    let out = tempfile::tempfile().map_err(|e| Error::io("create a temporary file for", std::env::temp_dir(), e))?;
    let err = out
        .try_clone()
        .map_err(|e| Error::io("duplicate", std::env::temp_dir(), e))?;
    let mut out_reader = out
        .try_clone()
        .map_err(|e| Error::io("duplicate", std::env::temp_dir(), e))?;
    let mut command = Command::new(program);
    match env {
        Some(vars) => {
            command.env_clear().envs(vars.iter().map(|(k, v)| (k, v)));
        }
        None => {
            for name in crate::secret::child_env_removals() {
                command.env_remove(name);
            }
        }
    }
    command
        .args(args)
        .env("HOME", home)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .map_err(|e| Error::Hook(format!("cannot run `{shown}`: {e}")))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let line = last_line(&mut out_reader, secrets);
                let said = if line.is_empty() {
                    String::new()
                } else {
                    format!(": {line}")
                };
                return Err(Error::Hook(format!("`{shown}` failed ({status}){said}")));
            }
            Ok(None) => {}
            Err(e) => return Err(Error::Hook(format!("cannot wait for `{shown}`: {e}"))),
        }
        if Instant::now() >= deadline {
            kill_group(&mut child);
            let _ = child.wait();
            return Err(Error::Timeout {
                message: format!(
                    "`{shown}` did not finish within {:.1} s; it was killed",
                    timeout.as_secs_f64()
                ),
                last: None,
            });
        }
        std::thread::sleep(POLL);
    }
}

/// Kill the child's process group (the child leads it), and the child itself should that fail.
fn kill_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: killpg only sends a signal; the group is the one the child was started in.
        if unsafe { libc::killpg(pgid, libc::SIGKILL) } == 0 {
            return;
        }
    }
    let _ = child.kill();
}

/// The address to connect to for a server listening on `host`: a wildcard address means this machine.
fn connect_addrs(host: &str, port: u16) -> Result<Vec<SocketAddr>> {
    let host = match host {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" | "[::]" => "::1",
        h => h.trim_start_matches('[').trim_end_matches(']'),
    };
    (host, port)
        .to_socket_addrs()
        .map(Iterator::collect)
        .map_err(|e| Error::Transport(format!("cannot resolve CCR's HOST {host}: {e}")))
}

/// Whether something accepts connections on `host:port` now.
pub fn answers(host: &str, port: u16) -> bool {
    connect_addrs(host, port)
        .unwrap_or_default()
        .iter()
        .any(|a| TcpStream::connect_timeout(a, CONNECT_TIMEOUT).is_ok())
}

/// Wait until `host:port` accepts a connection, at most `timeout`; `stopped` cancels the wait.
pub fn wait_port(host: &str, port: u16, timeout: Duration, stopped: &dyn Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if answers(host, port) {
            return Ok(());
        }
        if stopped() {
            return Err(Error::NotRunning("stopped while waiting for CCR's port".into()));
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                message: format!(
                    "CCR's port {host}:{port} did not answer within {:.1} s after the hook command",
                    timeout.as_secs_f64()
                ),
                last: None,
            });
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn a_command_runs_with_home_and_its_failure_quotes_the_last_line_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let ok = vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("test \"$HOME\" = '{}'", dir.path().display()),
        ];
        run_command(&ok, None, dir.path(), Duration::from_secs(10), &[]).unwrap();
        let err = run_command(
            &sh("echo first; echo 'rejected s3cret-value' >&2; exit 7"),
            None,
            dir.path(),
            Duration::from_secs(10),
            &["s3cret-value"],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Hook(_)), "{err:?}");
        assert!(msg.contains("exit status: 7") && msg.ends_with("rejected ***"), "{msg}");
    }

    #[test]
    fn a_slow_command_is_killed_and_a_missing_one_is_a_hook_error() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let err = run_command(&sh("sleep 30"), None, dir.path(), Duration::from_millis(300), &[]).unwrap_err();
        assert!(
            matches!(err, Error::Timeout { .. }) && err.to_string().contains("was killed"),
            "{err}"
        );
        assert!(t0.elapsed() < Duration::from_secs(10));
        let err = run_command(
            &["/nonexistent/ccr".into()],
            None,
            dir.path(),
            Duration::from_secs(1),
            &[],
        )
        .unwrap_err();
        assert!(matches!(err, Error::Hook(_)) && err.to_string().starts_with("cannot run `/nonexistent/ccr`"));
        assert!(run_command(&[], None, dir.path(), Duration::from_secs(1), &[]).is_err());
    }

    #[test]
    fn a_failure_masks_every_secret_the_process_knows() {
        let dir = tempfile::tempdir().unwrap();
        crate::secret::register("hook-known-client-secret");
        let err = run_command(
            &sh("echo 'secret is hook-known-client-secret' >&2; exit 3"),
            None,
            dir.path(),
            Duration::from_secs(10),
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().ends_with("secret is ***"), "{err}");
    }

    #[test]
    fn an_explicit_environment_is_the_whole_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let env = vec![
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            ("DATABRICKS_TOKEN".to_string(), "given-on-purpose".to_string()),
        ];
        run_command(
            &sh(&format!("env > {}", out.display())),
            Some(&env),
            dir.path(),
            Duration::from_secs(10),
            &[],
        )
        .unwrap();
        let mut seen: Vec<String> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
            .map(str::to_string)
            .collect();
        seen.sort();
        let home = format!("HOME={}", dir.path().display());
        assert_eq!(
            seen,
            vec!["DATABRICKS_TOKEN=given-on-purpose", home.as_str(), "PATH=/usr/bin:/bin"]
        );
    }

    fn alive(pid: &str) -> bool {
        // A zombie (killed, not yet reaped by its new parent) counts as gone.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        })
    }

    #[test]
    fn a_timeout_kills_everything_the_command_started() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("server.pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let err = run_command(&sh(&script), None, dir.path(), Duration::from_millis(500), &[]).unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(&pid) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        assert!(!alive(&pid), "the command's child {pid} survived the timeout");
    }

    #[test]
    fn a_detached_child_holding_the_output_does_not_hold_up_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        run_command(
            &sh("(sleep 5 &) ; echo started"),
            None,
            dir.path(),
            Duration::from_secs(4),
            &[],
        )
        .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn port_waits_end_on_an_answer_a_timeout_or_a_stop() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        wait_port("0.0.0.0", port, Duration::from_secs(5), &|| false).unwrap();
        assert!(answers("127.0.0.1", port));
        drop(listener);
        let err = wait_port("127.0.0.1", port, Duration::from_millis(200), &|| false).unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }) && err.to_string().contains(&format!(":{port} did not")));
        let err = wait_port("127.0.0.1", port, Duration::from_secs(30), &|| true).unwrap_err();
        assert!(matches!(err, Error::NotRunning(_)));
    }
}
