//! The loopback credential gateway (issue 10): agents that read a credential once (Gemini CLI, OpenCode, CCR)
//! talk to `http://127.0.0.1:<port>` with the gateway key, and the gateway forwards `/serving-endpoints/...` and
//! `/ai-gateway/...` to the workspace with a fresh token from the broker, so no Databricks token sits in any
//! agent's files and none goes stale in a running agent.
//!
//! The server side is hyper 1 (HTTP/1.1, one task per connection); the upstream side is reqwest with the
//! transport's TLS trust and proxies ([`crate::api::http::HttpClient::streaming_client`]). It listens on
//! 127.0.0.1 only. [`Gateway::stop`] stops accepting and lets running requests (streams included) finish for
//! up to [`DRAIN`], then cuts what is left. One gateway per cache folder: `gateway.json` names the running one.

pub mod files;
pub mod proxy;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;

use crate::api::http::HttpClient;
use crate::broker::{self, Broker, Kind};
use crate::config::{Config, ProcessEnv};
use crate::error::{Error, Result};
use crate::fsutil::{FileLock, ensure_private_dir};

/// How long running requests may take to finish after a stop.
pub const DRAIN: Duration = Duration::from_secs(30);
/// A stream (either way) that sends no byte for this long is ended.
pub const IDLE: Duration = Duration::from_secs(600);

/// What to start.
pub struct Options {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The workspace and identity.
    pub config: Config,
    /// Which token to forward.
    pub kind: Kind,
    /// The broker's cache file (the gateway's files go in its folder).
    pub cache_path: PathBuf,
    /// How long a stop waits for running requests.
    pub drain: Duration,
}

/// A running gateway. Dropping it stops it (without waiting for the drain).
pub struct Gateway {
    /// The port it listens on.
    pub port: u16,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its folder (`gateway.key`, `gateway.json`).
    pub folder: PathBuf,
    /// The kind of token it forwards (`Oauth` or `Pat`).
    pub kind: Kind,
    stop: tokio::sync::watch::Sender<bool>,
    stopped: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

impl Gateway {
    /// Start a gateway on the current tokio runtime. Fails when another gateway runs on the same cache folder
    /// (the message names its pid and url), or when the port cannot be bound.
    pub async fn start(opts: Options) -> Result<Gateway> {
        let margin = opts.kind.default_margin(broker::yields_oauth(&opts.config)?);
        let broker_opts = broker::Options {
            refresh_margin: margin,
            kind: opts.kind,
            ..broker::options(opts.cache_path.clone())
        };
        let broker = Broker::new(opts.config, broker_opts)?;
        let kind = broker.kind();
        let folder = files::folder(&opts.cache_path);
        ensure_private_dir(&folder)?;
        let state_path = folder.join(files::STATE_FILE);
        let lock = {
            let p = state_path.clone();
            tokio::task::spawn_blocking(move || FileLock::acquire(&p))
                .await
                .map_err(|e| Error::Config(format!("the lock task failed: {e}")))??
        };
        if let Some(other) = files::running(&folder) {
            return Err(Error::Config(format!(
                "a gateway already runs on this cache ({}): pid {}, {}",
                folder.display(),
                other.pid,
                other.url
            )));
        }
        let key = files::ensure_key(&folder)?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, opts.port)))
            .await
            .map_err(|e| Error::io("listen on 127.0.0.1 for", format!("127.0.0.1:{}", opts.port), e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("listen on 127.0.0.1 for", format!("127.0.0.1:{}", opts.port), e))?
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let state = files::State {
            pid: std::process::id(),
            port,
            url: url.clone(),
            started_at: broker::now(),
        };
        files::write_state(&folder, &state)?;
        drop(lock);
        let client = HttpClient::streaming_client(&ProcessEnv, IDLE)?;
        let shared = Arc::new(proxy::Shared::new(broker, key, client, IDLE));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        log::info!(
            "gateway listening on {url} (forwarding to {}, {} tokens)",
            shared.upstream,
            kind.as_str()
        );
        let dir = folder.clone();
        tokio::spawn(async move {
            serve(listener, shared, stop_rx, opts.drain).await;
            files::remove_state(&dir, &state);
            let _ = done_tx.send(());
        });
        Ok(Gateway {
            port,
            url,
            folder,
            kind,
            stop,
            stopped: Mutex::new(Some(done_rx)),
        })
    }

    /// Stop accepting, let running requests finish (up to the drain time), then return. Idempotent.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let done = self
            .stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(done) = done {
            let _ = done.await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<proxy::Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little rather than spin.
                        log::warn!("gateway: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(IDLE)
                    .serve_connection(TokioIo::new(stream), service_fn(move |req| proxy::handle(shared.clone(), req)));
                let conn = graceful.watch(conn);
                connections.spawn(async move {
                    if let Err(e) = conn.await {
                        log::debug!("gateway connection ended: {e}");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = async { let _ = stop.wait_for(|s| *s).await; } => break,
        }
    }
    drop(listener);
    let running = connections.len();
    if running > 0 {
        log::info!(
            "gateway stopping: letting {running} connection(s) finish (up to {} s)",
            drain.as_secs()
        );
    }
    let finished = tokio::time::timeout(drain, async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        log::warn!(
            "gateway stopped: cut {} request(s) still running after the drain",
            connections.len()
        );
        connections.abort_all();
    } else {
        log::info!("gateway stopped");
    }
}
