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

use crate::config::normalize_host;
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

/// Write `agent`'s configuration under `root` (normally the home folder). Returns its main file.
pub fn configure(agent: Agent, root: &Path, settings: &Settings) -> Result<Outcome> {
    match agent {
        Agent::ClaudeCode => claude::configure(root, settings),
        Agent::Codex => codex::configure(root, settings),
        Agent::Gemini => {
            let (url, key) = settings.gateway(agent)?;
            gemini::configure(root, url, key, settings.model_for(agent))
        }
        Agent::OpenCode => {
            let (url, key) = settings.gateway(agent)?;
            opencode::configure(root, url, key, settings.route, settings.model_for(agent))
        }
    }
}

/// Take out what [`configure`] added to `agent`'s files under `root`; everything else stays.
pub fn unconfigure(agent: Agent, root: &Path) -> Result<Outcome> {
    match agent {
        Agent::ClaudeCode => claude::unconfigure(root),
        Agent::Codex => codex::unconfigure(root),
        Agent::Gemini => gemini::unconfigure(root),
        Agent::OpenCode => opencode::unconfigure(root),
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
}
