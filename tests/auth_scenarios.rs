//! The auth scenarios of `tests/testdata/auth_scenarios.json` (shared with `tests/test_auth.py`), resolved with an
//! injected environment and home folder: the process environment is never read or changed. Plus the
//! `databricks-cli` strategy running a fake CLI for real.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use _native::api::http::HttpClient;
use _native::auth::default;
use _native::config::Config;
use serde_json::Value;

/// Where `{emulator}` points in Rust: resolution never contacts it.
const EMULATOR: &str = "http://127.0.0.1:9";

/// Folders with a fake `databricks` CLI (padded past 1 MiB), a small (legacy) one, and nothing.
struct Fixtures {
    _dir: tempfile::TempDir,
    fakecli: PathBuf,
    legacycli: PathBuf,
    emptydir: PathBuf,
}

fn executable(path: &Path, text: &[u8]) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn fixtures() -> Fixtures {
    let dir = tempfile::tempdir().unwrap();
    let script = std::fs::read("tests/testdata/fake-databricks-cli.sh").unwrap();
    let (fakecli, legacycli, emptydir) = (
        dir.path().join("cli"),
        dir.path().join("legacy"),
        dir.path().join("empty"),
    );
    for d in [&fakecli, &legacycli, &emptydir] {
        std::fs::create_dir(d).unwrap();
    }
    let mut padded = script.clone();
    while padded.len() <= 1024 * 1024 {
        padded.extend_from_slice(b"# padding: the real CLI is a single binary of many megabytes\n");
    }
    executable(&fakecli.join("databricks"), &padded);
    executable(&legacycli.join("databricks"), &script);
    Fixtures {
        _dir: dir,
        fakecli,
        legacycli,
        emptydir,
    }
}

impl Fixtures {
    fn fill(&self, s: &str) -> String {
        s.replace("{emulator}", EMULATOR)
            .replace("{fakecli}", &self.fakecli.to_string_lossy())
            .replace("{legacycli}", &self.legacycli.to_string_lossy())
            .replace("{emptydir}", &self.emptydir.to_string_lossy())
    }
}

fn strings(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// What a scenario resolves to: `(auth_type, host)` or the error message.
fn run(fx: &Fixtures, s: &Value) -> (Result<(String, String), String>, Option<Config>) {
    let mut env: HashMap<String, String> = strings(&s["env"]).into_iter().map(|(k, v)| (k, fx.fill(&v))).collect();
    env.insert("HOME".into(), s["home"].as_str().unwrap().into());
    env.entry("PATH".into())
        .or_insert_with(|| fx.emptydir.to_string_lossy().into_owned());
    let args: Vec<(String, Option<String>)> = strings(&s["args"])
        .into_iter()
        .map(|(k, v)| (k, Some(fx.fill(&v))))
        .collect();
    let args: Vec<(&str, Option<String>)> = args.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    match Config::resolve(&args, &env) {
        Err(e) => (Err(e.to_string()), None),
        Ok(cfg) => match default::resolve(&cfg) {
            Ok(c) => (
                Ok((c.auth_type().to_string(), cfg.host().unwrap_or_default().to_string())),
                Some(cfg),
            ),
            Err(e) => (Err(e.to_string()), Some(cfg)),
        },
    }
}

#[test]
fn every_scenario_resolves_as_expected() {
    let text = std::fs::read_to_string("tests/testdata/auth_scenarios.json").unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let scenarios = doc["scenarios"].as_array().unwrap();
    assert!(scenarios.len() >= 40, "only {} scenarios", scenarios.len());
    let fx = fixtures();
    let mut failures = Vec::new();
    for s in scenarios {
        let name = s["name"].as_str().unwrap();
        let want = &s["want"];
        let expected = match want.get("error") {
            Some(e) => Err(fx.fill(e.as_str().unwrap())),
            None => Ok((
                want["auth_type"].as_str().unwrap().to_string(),
                fx.fill(want["host"].as_str().unwrap()),
            )),
        };
        let (got, cfg) = run(&fx, s);
        if got != expected {
            failures.push(format!("{name}:\n   got {got:?}\n  want {expected:?}"));
            continue;
        }
        for (attr, value) in strings(&s["values"]) {
            let actual = cfg.as_ref().and_then(|c| c.get(&attr));
            if actual != Some(value.as_str()) {
                failures.push(format!("{name}: {attr} is {actual:?}, want {value:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} scenario(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn names_are_unique() {
    let text = std::fs::read_to_string("tests/testdata/auth_scenarios.json").unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let mut names: Vec<&str> = doc["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let n = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), n);
}

/// Env for the CLI tests: a host and `databricks_cli_path`.
fn cli_env(cli: &Path) -> HashMap<String, String> {
    [
        ("DATABRICKS_HOST", "https://cli.example.com"),
        ("DATABRICKS_CLI_PATH", cli.to_str().unwrap()),
        ("HOME", "tests/testdata/nohome"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
    .collect()
}

/// A wrapper around the fake CLI that sets its variables (the test never changes its own environment).
fn wrapper(fx: &Fixtures, name: &str, vars: &str) -> PathBuf {
    let path = fx.emptydir.join(name);
    let script = format!(
        "#!/bin/sh\n{vars} exec '{}' \"$@\"\n",
        fx.fakecli.join("databricks").display()
    );
    executable(&path, script.as_bytes());
    path
}

/// The chosen `databricks-cli` credentials really run the CLI, with `auth token --host H`, and cache its token.
#[tokio::test]
async fn databricks_cli_runs_the_cli_once_and_reads_its_token() {
    let fx = fixtures();
    let log = fx.emptydir.join("calls.log");
    let cli = wrapper(&fx, "logging", &format!("FAKE_CLI_LOG='{}'", log.display()));
    let env = cli_env(&cli);
    let cfg = Config::resolve(&[], &env).unwrap();
    let creds = default::resolve(&cfg).unwrap();
    assert_eq!(creds.auth_type(), "databricks-cli");
    let http = HttpClient::new(&env).unwrap();
    for _ in 0..3 {
        let header = creds.authorization(&http, &cfg).await.unwrap();
        assert_eq!(header.expose(), "Bearer fake-cli-access-token");
    }
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(calls, "auth token --host https://cli.example.com\n");
}

/// A CLI that fails is an error naming the strategy, quoting what the CLI said.
#[tokio::test]
async fn databricks_cli_failure_names_the_strategy() {
    let fx = fixtures();
    let wrapper = wrapper(&fx, "failing", "FAKE_CLI_FAIL=1");
    let env = cli_env(&wrapper);
    let cfg = Config::resolve(&[], &env).unwrap();
    let creds = default::resolve(&cfg).unwrap();
    let err = creds
        .authorization(&HttpClient::new(&env).unwrap(), &cfg)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "databricks-cli: cannot get access token: Error: cannot get access token: default auth: databricks-cli: \
             cannot find a login for https://cli.example.com. Run 'databricks auth login --host \
             https://cli.example.com'. Config: host=https://cli.example.com, databricks_cli_path={}. Env: \
             DATABRICKS_HOST, DATABRICKS_CLI_PATH",
            wrapper.display()
        )
    );
}
