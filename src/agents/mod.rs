//! Coding agents wired to Databricks: one module per agent, each writing only its own files.
//!
//! Every file is merged, never overwritten: the user's keys, order and (TOML) comments stay; only the keys we
//! own are set. Writes go through [`crate::fsutil::update_file`]: atomic, 0600 from the first byte, under the
//! file's sidecar lock, through a symlink to its final target. **No Databricks token is ever written**: Claude
//! Code and Codex run our `token get` command whenever they need a credential; Gemini CLI and OpenCode, which
//! hold a key for the life of the process, talk to the loopback gateway with its key (not a Databricks
//! credential).
//!
//! [`configure`] and [`unconfigure`] are the entry points; `unconfigure` takes out exactly the keys
//! `configure` sets (the file itself stays, with everything else in it).

pub mod claude;
pub mod codex;
pub mod gemini;
mod json;
pub mod opencode;

use std::path::{Path, PathBuf};

use crate::config::{Env, normalize_host};
use crate::error::{Error, Result};

/// The header Databricks' own launchers add to every model request.
pub const CODING_AGENT_HEADER: (&str, &str) = ("x-databricks-use-coding-agent-mode", "true");

/// How often (ms) Claude Code and Codex re-run `token get`: well inside the 600 s of life a token from
/// `token get` has left at least (the broker's default refresh margin), since Databricks answers an expired
/// token with 403, on which neither agent re-runs its helper.
pub const REFRESH_MS: u64 = 300_000;

/// A coding agent we know how to configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    /// Anthropic's Claude Code (`claude`).
    ClaudeCode,
    /// OpenAI's Codex CLI (`codex`).
    Codex,
    /// Google's Gemini CLI (`gemini`), through the gateway.
    Gemini,
    /// OpenCode (`opencode`), through the gateway.
    OpenCode,
}

impl Agent {
    /// Every agent, in the order `setup` reports them.
    pub const ALL: [Agent; 4] = [Agent::ClaudeCode, Agent::Codex, Agent::Gemini, Agent::OpenCode];

    /// The name used by `configure_agents` and `setup --agents`.
    pub fn name(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude-code",
            Agent::Codex => "codex",
            Agent::Gemini => "gemini",
            Agent::OpenCode => "opencode",
        }
    }

    /// The agent's command-line program.
    pub fn program(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude",
            Agent::Codex => "codex",
            Agent::Gemini => "gemini",
            Agent::OpenCode => "opencode",
        }
    }

    /// Whether the agent goes through the loopback gateway (it cannot re-fetch a credential itself).
    pub fn needs_gateway(self) -> bool {
        matches!(self, Agent::Gemini | Agent::OpenCode)
    }

    /// The model configured when the caller names none.
    pub fn default_model(self) -> &'static str {
        match self {
            Agent::ClaudeCode | Agent::OpenCode => "databricks-claude-sonnet-4-5",
            Agent::Codex => "databricks-gpt-5",
            Agent::Gemini => "databricks-gemini-2-5-pro",
        }
    }

    /// Parse an agent name; an unknown one is an error naming it and listing the valid ones.
    pub fn parse(name: &str) -> Result<Agent> {
        Agent::ALL.into_iter().find(|a| a.name() == name).ok_or_else(|| {
            let valid: Vec<&str> = Agent::ALL.iter().map(|a| a.name()).collect();
            Error::invalid("agents", format!("unknown agent {name:?}; valid: {}", valid.join(", ")))
        })
    }
}

/// Which Databricks API family the agents call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The classic model-serving routes (`/serving-endpoints/...`).
    ServingEndpoints,
    /// The AI Gateway (v2) routes (`/ai-gateway/...`).
    AiGateway,
}

impl Route {
    /// Parse a route name; an unknown one is an error naming it and listing the valid ones.
    pub fn parse(name: &str) -> Result<Route> {
        match name {
            "serving-endpoints" => Ok(Route::ServingEndpoints),
            "ai-gateway" => Ok(Route::AiGateway),
            _ => Err(Error::invalid(
                "route",
                format!("unknown route {name:?}; valid: serving-endpoints, ai-gateway"),
            )),
        }
    }
}

/// What an agent's files are written from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The workspace URL (`https://<host>`), as [`normalize_host`] leaves it.
    pub host: String,
    /// The API family.
    pub route: Route,
    /// The model; `None` for the agent's [`Agent::default_model`].
    pub model: Option<String>,
    /// The command that prints a token, as a program (absolute path) and its leading arguments; `token get`
    /// is appended.
    pub helper: Vec<String>,
    /// The loopback gateway's URL (Gemini CLI and OpenCode only).
    pub gateway_url: Option<String>,
    /// The file holding the gateway key (Gemini CLI and OpenCode only).
    pub gateway_key_file: Option<PathBuf>,
}

impl Settings {
    /// Check and normalise the caller's values: `host` (`https://` added when there is no scheme), a helper
    /// with an absolute program, a model without whitespace, a gateway URL with an http(s) scheme.
    pub fn new(
        host: &str,
        route: Route,
        model: Option<String>,
        helper: Vec<String>,
        gateway_url: Option<String>,
        gateway_key_file: Option<PathBuf>,
    ) -> Result<Settings> {
        let host = normalize_host(host).map_err(|r| Error::invalid("host", r))?;
        match helper.first() {
            Some(p) if Path::new(p).is_absolute() => {}
            _ => {
                return Err(Error::invalid(
                    "helper",
                    "must start with an absolute path to a program",
                ));
            }
        }
        if let Some(m) = &model
            && (m.is_empty() || m.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(Error::invalid("models", format!("bad model name {m:?}")));
        }
        let gateway_url = match gateway_url {
            None => None,
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                Some(normalize_host(&u).map_err(|r| Error::invalid("gateway_url", r))?)
            }
            Some(u) => {
                return Err(Error::invalid(
                    "gateway_url",
                    format!("must be an http(s) URL, got {u:?}"),
                ));
            }
        };
        Ok(Settings {
            host,
            route,
            model,
            helper,
            gateway_url,
            gateway_key_file,
        })
    }

    /// The model for `agent`.
    pub fn model_for(&self, agent: Agent) -> &str {
        self.model.as_deref().unwrap_or(agent.default_model())
    }

    /// The gateway URL and key file, or the error that says how to start the gateway.
    fn gateway(&self, agent: Agent) -> Result<(&str, &Path)> {
        match (&self.gateway_url, &self.gateway_key_file) {
            (Some(url), Some(key)) => Ok((url, key)),
            _ => Err(Error::Config(format!(
                "{} needs the credential gateway and none is running: start it with `devbox-native gateway` \
                 (or pass its URL with gateway_url / --gateway-url), then configure {} again",
                agent.name(),
                agent.name()
            ))),
        }
    }
}

/// What configuring or unconfiguring one agent did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The agent's main file.
    pub path: PathBuf,
    /// Whether any file was changed.
    pub changed: bool,
    /// Things the user should know (a removed key that would have overridden ours, ...).
    pub warnings: Vec<String>,
}

impl Outcome {
    /// An outcome with nothing to warn about.
    pub fn quiet(path: PathBuf, changed: bool) -> Outcome {
        Outcome {
            path,
            changed,
            warnings: Vec::new(),
        }
    }
}

/// The file each agent reads, as the pinned CLIs (tests/agents/package.json) were measured to find it: run
/// offline against the emulator with only that variable pointing at our file ("run"), or read in the CLI's
/// bundle ("read"):
///
/// - Claude Code 2.1.197: `$CLAUDE_CONFIG_DIR/settings.json`, the folder replacing `~/.claude` (run). It takes
///   the value as it is (`??`): an empty one means `settings.json` in its working folder (run), a relative one
///   is resolved from its working folder (run).
/// - Codex 0.171.0: `$CODEX_HOME/config.toml`, the folder replacing `~/.codex` (run); an empty value is ignored,
///   `~/.codex/config.toml` is read (run); a relative one is resolved from its working folder (run); a folder
///   that does not exist stops it at start-up (run; we create the folder).
/// - Gemini CLI 0.61.0: `$GEMINI_CLI_HOME/.gemini/.env` and `settings.json`: the variable replaces the home
///   folder, `.gemini` stays (run); an empty value is ignored, a relative one used as it is (read).
/// - OpenCode 1.18.33: `$OPENCODE_CONFIG_DIR/opencode.json` (run), else the file `$OPENCODE_CONFIG` (run), else
///   `$XDG_CONFIG_HOME/opencode/opencode.json` (run), else `~/.config/opencode/opencode.json`. It loads the
///   global file, then `OPENCODE_CONFIG`, then `OPENCODE_CONFIG_DIR`'s, a later one winning (read), so we
///   write the one loaded last; empty values count as unset (read).
///
/// An agent started elsewhere would resolve a relative value differently from us, so a relative value (and
/// Claude Code's empty one) is refused, naming the variable; an empty one the agent ignores is ignored.
/// `XDG_CONFIG_HOME` follows the XDG rule (only an absolute value counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place<'a> {
    /// An explicit root (`root_dir=` / `--root`): `<root>/.claude/settings.json`, ... as under a home folder;
    /// the agents' variables do not apply (a root is a throwaway home in tests, an image's target folder).
    Root(&'a Path),
    /// The home folder, moved by the agents' variables where they are set.
    Home,
}

/// How an agent treats an empty value of its variable.
#[derive(Clone, Copy, PartialEq)]
enum Empty {
    /// As unset.
    Ignored,
    /// As the working folder (refused: it depends on where the agent starts).
    Relative,
}

/// The absolute path in variable `name`, `None` when unset (or empty and `empty` is [`Empty::Ignored`]).
fn var_path(env: &dyn Env, name: &str, empty: Empty) -> Result<Option<PathBuf>> {
    let Some(value) = env.var_os(name) else { return Ok(None) };
    if value.is_empty() && empty == Empty::Ignored {
        return Ok(None);
    }
    let path = PathBuf::from(&value);
    if !path.is_absolute() {
        return Err(Error::invalid(
            name,
            format!(
                "must be an absolute path (the agent would resolve {:?} from wherever it starts): set it to an \
                 absolute path or unset it",
                path.display().to_string()
            ),
        ));
    }
    Ok(Some(path))
}

/// The main file of `agent` under `place`: where [`configure`] writes and the agent reads (see [`Place`]).
pub fn main_file(agent: Agent, place: Place<'_>, env: &dyn Env) -> Result<PathBuf> {
    let home = || -> Result<PathBuf> {
        env.home()
            .filter(|h| !h.as_os_str().is_empty())
            .ok_or_else(|| Error::Config("cannot find the home folder (HOME is not set): pass root_dir".into()))
    };
    if let Place::Root(root) = place {
        return Ok(default_file(agent, root));
    }
    Ok(match agent {
        Agent::ClaudeCode => match var_path(env, "CLAUDE_CONFIG_DIR", Empty::Relative)? {
            Some(dir) => dir.join("settings.json"),
            None => default_file(agent, &home()?),
        },
        Agent::Codex => match var_path(env, "CODEX_HOME", Empty::Ignored)? {
            Some(dir) => dir.join("config.toml"),
            None => default_file(agent, &home()?),
        },
        Agent::Gemini => match var_path(env, "GEMINI_CLI_HOME", Empty::Ignored)? {
            Some(dir) => default_file(agent, &dir),
            None => default_file(agent, &home()?),
        },
        Agent::OpenCode => {
            if let Some(dir) = var_path(env, "OPENCODE_CONFIG_DIR", Empty::Ignored)? {
                dir.join("opencode.json")
            } else if let Some(file) = var_path(env, "OPENCODE_CONFIG", Empty::Ignored)? {
                file
            } else {
                match env.var_os("XDG_CONFIG_HOME").map(PathBuf::from) {
                    Some(xdg) if xdg.is_absolute() => xdg.join("opencode").join("opencode.json"),
                    _ => default_file(agent, &home()?),
                }
            }
        }
    })
}

/// The main file of `agent` under a home folder (or root) with no variable set.
fn default_file(agent: Agent, root: &Path) -> PathBuf {
    match agent {
        Agent::ClaudeCode => root.join(".claude").join("settings.json"),
        Agent::Codex => root.join(".codex").join("config.toml"),
        Agent::Gemini => root.join(".gemini").join(".env"),
        Agent::OpenCode => root.join(".config").join("opencode").join("opencode.json"),
    }
}

/// Write `agent`'s configuration into its [`main_file`] under `place`. Returns that file.
pub fn configure(agent: Agent, place: Place<'_>, env: &dyn Env, settings: &Settings) -> Result<Outcome> {
    let path = main_file(agent, place, env)?;
    match agent {
        Agent::ClaudeCode => claude::configure(&path, settings),
        Agent::Codex => codex::configure(&path, settings),
        Agent::Gemini => {
            let (url, key) = settings.gateway(agent)?;
            gemini::configure(&path, url, key, settings.model_for(agent))
        }
        Agent::OpenCode => {
            let (url, key) = settings.gateway(agent)?;
            opencode::configure(&path, url, key, settings.route, settings.model_for(agent))
        }
    }
}

/// Take out what [`configure`] added to `agent`'s files under `place`; everything else stays.
pub fn unconfigure(agent: Agent, place: Place<'_>, env: &dyn Env) -> Result<Outcome> {
    let path = main_file(agent, place, env)?;
    match agent {
        Agent::ClaudeCode => claude::unconfigure(&path),
        Agent::Codex => codex::unconfigure(&path),
        Agent::Gemini => gemini::unconfigure(&path),
        Agent::OpenCode => opencode::unconfigure(&path),
    }
}

/// Quote a word for `/bin/sh` (Claude Code runs `apiKeyHelper` through the shell): as it is when it holds
/// only characters the shell leaves alone, else in single quotes.
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r#"'"'"'"#))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_ones_list_the_valid() {
        for a in Agent::ALL {
            assert_eq!(Agent::parse(a.name()).unwrap(), a);
        }
        let e = Agent::parse("cursor").unwrap_err().to_string();
        assert_eq!(
            e,
            "agents: unknown agent \"cursor\"; valid: claude-code, codex, gemini, opencode"
        );
        assert_eq!(Route::parse("ai-gateway").unwrap(), Route::AiGateway);
        let e = Route::parse("v3").unwrap_err().to_string();
        assert!(e.starts_with("route: unknown route \"v3\"") && e.contains("serving-endpoints, ai-gateway"));
    }

    #[test]
    fn shell_quoting_survives_spaces_and_quotes() {
        assert_eq!(shell_quote("/venv/bin/devbox-native"), "/venv/bin/devbox-native");
        assert_eq!(shell_quote("/my venv/bin/x"), "'/my venv/bin/x'");
        assert_eq!(shell_quote("/it's/x"), r#"'/it'"'"'s/x'"#);
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn settings_are_checked() {
        let ok = |h: Vec<String>| Settings::new("ws.example.com/", Route::AiGateway, None, h, None, None);
        assert_eq!(ok(vec!["/bin/x".into()]).unwrap().host, "https://ws.example.com");
        assert!(
            ok(vec!["devbox-native".into()])
                .unwrap_err()
                .to_string()
                .starts_with("helper:")
        );
        assert!(ok(vec![]).is_err());
        let bad_gw = Settings::new(
            "h",
            Route::AiGateway,
            None,
            vec!["/x".into()],
            Some("127.0.0.1:1".into()),
            None,
        );
        assert!(bad_gw.unwrap_err().to_string().starts_with("gateway_url:"));
        let bad_model = Settings::new("h", Route::AiGateway, Some("a b".into()), vec!["/x".into()], None, None);
        assert!(bad_model.unwrap_err().to_string().starts_with("models:"));
    }

    #[test]
    fn each_agent_reads_where_its_variable_says() {
        use std::collections::HashMap;
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            let mut m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            m.insert("HOME".into(), "/h".into());
            m
        };
        let file =
            |agent, e: &HashMap<String, String>| main_file(agent, Place::Home, e).map(|p| p.display().to_string());
        let none = env(&[]);
        assert_eq!(file(Agent::ClaudeCode, &none).unwrap(), "/h/.claude/settings.json");
        assert_eq!(file(Agent::Codex, &none).unwrap(), "/h/.codex/config.toml");
        assert_eq!(file(Agent::Gemini, &none).unwrap(), "/h/.gemini/.env");
        assert_eq!(
            file(Agent::OpenCode, &none).unwrap(),
            "/h/.config/opencode/opencode.json"
        );
        let set = env(&[
            ("CLAUDE_CONFIG_DIR", "/c"),
            ("CODEX_HOME", "/x"),
            ("GEMINI_CLI_HOME", "/g"),
            ("XDG_CONFIG_HOME", "/xdg"),
        ]);
        assert_eq!(file(Agent::ClaudeCode, &set).unwrap(), "/c/settings.json");
        assert_eq!(file(Agent::Codex, &set).unwrap(), "/x/config.toml");
        assert_eq!(file(Agent::Gemini, &set).unwrap(), "/g/.gemini/.env");
        assert_eq!(file(Agent::OpenCode, &set).unwrap(), "/xdg/opencode/opencode.json");
        let oc = env(&[("OPENCODE_CONFIG", "/o/my.json"), ("XDG_CONFIG_HOME", "/xdg")]);
        assert_eq!(file(Agent::OpenCode, &oc).unwrap(), "/o/my.json");
        let ocd = env(&[("OPENCODE_CONFIG_DIR", "/od"), ("OPENCODE_CONFIG", "/o/my.json")]);
        assert_eq!(file(Agent::OpenCode, &ocd).unwrap(), "/od/opencode.json");
        // An explicit root keeps its layout: the variables do not apply.
        let root = main_file(Agent::Codex, Place::Root(Path::new("/r")), &set).unwrap();
        assert_eq!(root, Path::new("/r/.codex/config.toml"));
        // Empty: ignored where the agent ignores it, refused where the agent would read its working folder.
        let empty = env(&[
            ("CODEX_HOME", ""),
            ("GEMINI_CLI_HOME", ""),
            ("XDG_CONFIG_HOME", ""),
            ("CLAUDE_CONFIG_DIR", ""),
            ("OPENCODE_CONFIG_DIR", ""),
            ("OPENCODE_CONFIG", ""),
        ]);
        assert_eq!(file(Agent::Codex, &empty).unwrap(), "/h/.codex/config.toml");
        assert_eq!(file(Agent::Gemini, &empty).unwrap(), "/h/.gemini/.env");
        assert_eq!(
            file(Agent::OpenCode, &empty).unwrap(),
            "/h/.config/opencode/opencode.json"
        );
        let e = file(Agent::ClaudeCode, &empty).unwrap_err().to_string();
        assert!(e.starts_with("CLAUDE_CONFIG_DIR: must be an absolute path"), "{e}");
        for var in [
            "CODEX_HOME",
            "CLAUDE_CONFIG_DIR",
            "GEMINI_CLI_HOME",
            "OPENCODE_CONFIG",
            "OPENCODE_CONFIG_DIR",
        ] {
            let rel = env(&[(var, "rel/dir")]);
            let errs: Vec<String> = Agent::ALL
                .iter()
                .filter_map(|a| file(*a, &rel).err())
                .map(|e| e.to_string())
                .collect();
            assert_eq!(errs.len(), 1, "{var}: {errs:?}");
            assert!(
                errs[0].starts_with(&format!("{var}: must be an absolute path")),
                "{}",
                errs[0]
            );
        }
        // A relative XDG_CONFIG_HOME is not a base directory (the XDG rule).
        assert_eq!(
            file(Agent::OpenCode, &env(&[("XDG_CONFIG_HOME", "rel")])).unwrap(),
            "/h/.config/opencode/opencode.json"
        );
    }
}
