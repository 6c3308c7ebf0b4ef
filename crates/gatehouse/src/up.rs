//! `gatehouse up [DIR]` (SPEC §1): the local "it just works" mode. Reads `DIR/Spacefile`, starts each
//! micro with a `run` command, puts the gateway in front, serves the control plane, keeps data in
//! `DIR/.gatehouse/`. Also the wiring shared with `serve` when apps are configured.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use gatehouse_core::spacefile::{self, Backend, Spacefile};
use gatehouse_core::Environment;
use gatehouse_server::gateway::{Gateway, GatewayApp, GatewayConfig, Upstream};
use gatehouse_server::{percore, App};
use gatehouse_store::Store;
use tokio::sync::watch;

use crate::config::Config;
use crate::supervisor::{self, MicroProcess};

/// Reads and validates a Spacefile, printing every problem with file and line.
pub fn load_spacefile(path: &Path) -> Result<Spacefile> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    spacefile::parse_bytes(&path.display().to_string(), &bytes).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!("the Spacefile has {} problem(s):\n{}", errors.len(), list.join("\n"))
    })
}

/// The hosts a local app answers on for a listen address.
fn local_hosts(addr: std::net::SocketAddr) -> Vec<String> {
    let port = addr.port();
    if addr.ip().is_unspecified() || addr.ip().is_loopback() {
        vec![format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")]
    } else {
        vec![format!("{}:{port}", addr.ip())]
    }
}

/// Creates the owner from config, or prints a one-time setup link when there is no user yet.
pub async fn bootstrap_owner(app: &App, cfg: &Config) -> Result<Option<String>> {
    let users = &app.state.users;
    if users.has_any().await? {
        return Ok(None);
    }
    if let Some((email, password)) = &cfg.owner {
        users
            .create_owner(email, password.expose(), "config")
            .await
            .map_err(|e| anyhow::anyhow!("owner_email/owner_password: {e}"))?;
        println!("  owner      {email} (from GATEHOUSE_OWNER_EMAIL)");
        return Ok(None);
    }
    let token = gatehouse_services::sessions::new_token().0;
    *app.state.web.setup_token.lock() = Some(token.clone());
    Ok(Some(format!("{}/setup?token={token}", app.state.web.cp_origin)))
}

/// Runs the control plane and the gateway until SIGINT/SIGTERM.
pub async fn run_platform(
    cfg: &Config,
    store: Arc<dyn Store>,
    apps: Vec<GatewayApp>,
    banner: Vec<String>,
    micros: Vec<MicroProcess>,
) -> Result<()> {
    let cp_listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {} (control plane)", cfg.listen))?;
    let gw_listener = if apps.is_empty() {
        None
    } else {
        Some(
            tokio::net::TcpListener::bind(cfg.gateway_listen)
                .await
                .with_context(|| format!("cannot listen on {} (gateway)", cfg.gateway_listen))?,
        )
    };
    let names: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    crate::config::check_access_names(cfg.config_file.as_deref(), &cfg.server.access, &names)?;
    let infos = apps.iter().map(GatewayApp::info).collect();
    let apps_hosts: Vec<String> = apps.iter().flat_map(|a| a.hosts.clone()).collect();
    let app = App::build_with_apps(cfg.server.clone(), store, infos)
        .await
        .context("cannot initialise (storage, redis_url)")?;
    let setup_link = bootstrap_owner(&app, cfg).await?;
    for c in &cfg.oauth_clients {
        match app.state.oauth.sync_configured(c).await {
            Ok(true) => tracing::info!(client = %c.id, "OAuth client from the config file created or updated"),
            Ok(false) => {}
            Err(e) => bail!("oauth.clients `{}`: {e}", c.id),
        }
    }
    crate::memory::spawn_releaser();
    let edge = match &cfg.tls {
        Some(tls) => Some(start_tls(&app, tls, &apps)?),
        None => None,
    };
    let redirect_listener = match cfg.http_redirect_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (http_redirect_listen)"))?,
        ),
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut micro_tasks = vec![];
    for m in &micros {
        micro_tasks.push(tokio::spawn(supervisor::supervise(m.clone(), stop_rx.clone())));
    }
    for m in &micros {
        if !supervisor::wait_ready(m.port, Duration::from_secs(60)).await {
            eprintln!(
                "[{}] not accepting connections on port {} after 60 s; the gateway answers 502 until it does",
                m.name, m.port
            );
        }
    }
    let background = app.start_background().await;
    // Policy edits reach this node within a second (SPEC §15); only a gateway has apps to guard.
    let access_reload = match (&cfg.config_file, apps.is_empty()) {
        (Some(file), false) => Some(crate::access_reload::spawn(
            file.clone(),
            apps.iter().map(|a| a.name.clone()).collect(),
            app.state.access.clone(),
        )),
        _ => None,
    };
    let grace = cfg.server.shutdown_grace;
    let signal = {
        let stop_tx = stop_tx.clone();
        async move {
            crate::cli::shutdown_signal().await;
            let _ = stop_tx.send(true);
        }
    };
    tokio::spawn(signal);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let limits = cfg.server.listener.clone();
    let gate = || {
        let plain = gatehouse_server::listener::ConnectionGate::new(limits.clone());
        match &edge {
            Some(e) => plain.with_tls(e.certs.clone(), e.alpn_challenges),
            None => plain,
        }
    };
    let cp_gate = gate();
    let cp = tokio::spawn(gatehouse_server::listener::serve(
        app.router(),
        cp_listener,
        cp_gate,
        grace,
        stopped(stop_rx.clone()),
    ));
    let gw = match gw_listener {
        None => None,
        Some(l) => {
            let config = GatewayConfig {
                apps,
                upstream_timeout: cfg.upstream_timeout,
                public_rate_limit: cfg.public_rate_limit,
            };
            let state = app.state.clone();
            // One gateway (own upstream pool) per thread; see gatehouse_server::percore.
            let make_router = || Gateway::new(state.clone(), config.clone()).router();
            Some(
                percore::serve(make_router, l.into_std()?, gate(), cfg.gateway_threads, grace, || {
                    stopped(stop_rx.clone())
                })
                .context("cannot start the gateway threads")?,
            )
        }
    };
    let redirect = match (redirect_listener, &edge) {
        (Some(l), Some(e)) => {
            let mut hosts = gatehouse_core::https_redirect::HttpsHosts::default();
            for a in &apps_hosts {
                hosts.add(a, cfg.gateway_listen.port());
            }
            hosts.add(&app.state.web.cp_host, 443);
            let router = gatehouse_server::tls::redirect::router(hosts, e.tokens.clone());
            let gate = gatehouse_server::listener::ConnectionGate::new(limits.clone());
            Some(tokio::spawn(gatehouse_server::listener::serve(router, l, gate, grace, stopped(stop_rx.clone()))))
        }
        _ => None,
    };
    for line in banner {
        println!("{line}");
    }
    if let Some(e) = &edge {
        println!("  https      {}", e.describe);
    }
    if let Some(addr) = cfg.http_redirect_listen {
        println!("  http       {addr} redirects to https");
    }
    println!("  control    {}", app.state.web.cp_origin);
    println!("  storage    {}", cfg.store_display());
    if cfg.server.redis_url.is_some() {
        println!("  limits     {}", cfg.limits_display());
    }
    if let Some(link) = setup_link {
        println!();
        println!("  No owner account yet. Create it here (the link works once):");
        println!("    {link}");
    }
    let _ = cp.await;
    if let Some(r) = redirect {
        let _ = r.await;
    }
    let mut gw = gw;
    if let Some(gw) = &mut gw {
        if let Err(e) = gw.stopped().await {
            tracing::warn!(error = %e, "the gateway stopped with an error");
        }
    }
    let _ = stop_tx.send(true);
    for t in micro_tasks {
        let _ = t.await;
    }
    if let Some(t) = access_reload {
        t.abort();
    }
    background.shutdown().await;
    if let Some(e) = edge {
        for t in e.tasks {
            t.abort();
        }
    }
    if let Some(gw) = gw {
        tokio::task::spawn_blocking(move || gw.close()).await.ok();
    }
    Ok(())
}

/// What serves HTTPS (SPEC §14): the certificates both listeners present, the pending HTTP-01
/// tokens the redirect listener answers, and the tasks that reload and renew them.
struct Edge {
    certs: Arc<gatehouse_server::tls::Certificates>,
    tokens: Arc<gatehouse_server::tls::redirect::Http01Tokens>,
    alpn_challenges: bool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    describe: String,
}

/// Loads `[tls]`'s certificate files (an error stops the start) and starts their watcher, and the
/// ACME manager for every app host and the control plane's host.
fn start_tls(app: &App, tls: &crate::config::TlsSettings, apps: &[GatewayApp]) -> Result<Edge> {
    use gatehouse_server::tls::{acme, files, redirect::Http01Tokens, Certificates};
    let certs = Arc::new(Certificates::default());
    let tokens = Arc::new(Http01Tokens::default());
    let status = app.state.tls.clone();
    let metrics = app.state.metrics.clone();
    let mut tasks = vec![];
    let mut describe = vec![];
    if let Some(f) = &tls.files {
        let task = files::serve_and_watch(f.clone(), certs.clone(), status.clone(), metrics.clone())
            .with_context(|| "[tls] cert_file / key_file".to_string())?;
        tasks.push(task);
        describe.push(format!("certificate {}", f.cert_file.display()));
    }
    let mut alpn_challenges = false;
    if let Some(a) = &tls.acme {
        let hosts = apps.iter().flat_map(|a| a.hosts.iter().map(String::as_str));
        let names = acme::certificate_names(hosts.chain([app.state.web.cp_host.as_str()]));
        if names.is_empty() {
            bail!("[tls.acme]: no host a CA can issue for (IP addresses and localhost are left out)");
        }
        alpn_challenges = a.challenge == acme::Challenge::TlsAlpn01;
        describe.push(format!("ACME {} for {}", a.directory_url, names.join(", ")));
        let manager = acme::Acme::new(a.clone(), names, certs.clone(), tokens.clone(), status, metrics);
        manager.load_cache();
        tasks.push(manager.spawn());
    }
    Ok(Edge { certs, tokens, alpn_challenges, tasks, describe: describe.join("; ") })
}

/// Prepares each micro of a Spacefile in `dir`: ports, environment, dependency install and `commands`.
pub async fn prepare_micros(
    dir: &Path,
    sf: &Spacefile,
    app_host: &str,
) -> Result<(HashMap<String, Upstream>, Vec<MicroProcess>)> {
    let mut upstreams = HashMap::new();
    let mut processes = vec![];
    for m in &sf.micros {
        match &m.backend {
            Backend::Upstream(url) => {
                let authority = url.trim_start_matches("http://").trim_start_matches("https://").to_owned();
                if url.starts_with("https://") {
                    bail!(
                        "micro `{}`: https upstreams are not supported yet; use http:// on a private network",
                        m.name
                    );
                }
                upstreams.insert(m.name.clone(), Upstream::Http(authority));
            }
            Backend::Static { dir: d } => {
                upstreams.insert(m.name.clone(), Upstream::Static(dir.join(d)));
            }
            Backend::Run { command, src } => {
                let src_dir: PathBuf = dir.join(src);
                if !src_dir.is_dir() {
                    bail!("micro `{}`: src directory {} does not exist", m.name, src_dir.display());
                }
                // Deta installed a micro's dependencies itself; do the same when they are missing.
                let node = m.engine.as_deref().is_some_and(|e| e.starts_with("nodejs"));
                if node && src_dir.join("package.json").is_file() && !src_dir.join("node_modules").exists() {
                    supervisor::run_step(&m.name, "npm install --no-audit --no-fund", &src_dir, &[]).await?;
                }
                let python = m.engine.as_deref().is_some_and(|e| e.starts_with("python"));
                let step_env = if python { python_env(&m.name, &src_dir).await? } else { vec![] };
                for c in &m.commands {
                    supervisor::run_step(&m.name, c, &src_dir, &step_env).await?;
                }
                let port = supervisor::free_port()?;
                let mut env = step_env;
                env.extend([
                    ("DETA_SPACE_APP_HOSTNAME".to_owned(), app_host.to_owned()),
                    ("DETA_SPACE_APP_MICRO_NAME".to_owned(), m.name.clone()),
                    ("DETA_SPACE_APP_MICRO_TYPE".to_owned(), if m.primary { "primary" } else { "normal" }.to_owned()),
                ]);
                for var in &m.env {
                    // The Spacefile's default, unless the same variable is set where Gatehouse runs.
                    if let Some(v) = std::env::var(&var.name).ok().or_else(|| var.default.clone()) {
                        env.push((var.name.clone(), v));
                    }
                }
                upstreams.insert(m.name.clone(), Upstream::Http(format!("127.0.0.1:{port}")));
                processes.push(MicroProcess {
                    name: m.name.clone(),
                    command: command.clone(),
                    dir: src_dir,
                    port,
                    env,
                });
            }
        }
    }
    Ok((upstreams, processes))
}

/// A Python micro's virtual environment, `.venv` in its `src` directory: used when present; created and
/// filled from `requirements.txt` when there is one and no `.venv` yet (a failed install leaves none
/// behind, so the next start tries again). Answers the environment its steps and process run with:
/// the venv's `bin` first on `PATH`, and `VIRTUAL_ENV`, so `python`, `pip` and installed commands such
/// as `uvicorn` are the venv's.
async fn python_env(micro: &str, src_dir: &Path) -> Result<Vec<(String, String)>> {
    let venv = src_dir.join(".venv");
    if !venv.exists() && src_dir.join("requirements.txt").is_file() {
        let install = async {
            supervisor::run_step(micro, "python3 -m venv .venv", src_dir, &[]).await?;
            supervisor::run_step(
                micro,
                ".venv/bin/python -m pip install --disable-pip-version-check -r requirements.txt",
                src_dir,
                &[],
            )
            .await
        };
        if let Err(e) = install.await {
            let _ = std::fs::remove_dir_all(&venv);
            return Err(e);
        }
    }
    let bin = venv.join("bin");
    if !bin.is_dir() {
        return Ok(vec![]);
    }
    let bin = bin.canonicalize().unwrap_or(bin);
    let path = match std::env::var_os("PATH") {
        Some(p) => std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(&p)))?,
        None => bin.clone().into_os_string(),
    };
    let venv = venv.canonicalize().unwrap_or(venv);
    Ok(vec![
        ("PATH".to_owned(), path.to_string_lossy().into_owned()),
        ("VIRTUAL_ENV".to_owned(), venv.display().to_string()),
    ])
}

/// The name `up` serves a Spacefile's app under (what `[access.<app>]` names): its `app_name`, else
/// the directory's name.
pub fn app_name(dir: &Path, sf: &Spacefile) -> String {
    sf.app_name.clone().unwrap_or_else(|| {
        dir.canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "app".into())
    })
}

/// `gatehouse up [DIR]`.
pub async fn up(cfg: Config, dir: PathBuf, store: Arc<dyn Store>) -> Result<()> {
    let sf = load_spacefile(&dir.join("Spacefile"))?;
    let hosts = local_hosts(cfg.gateway_listen);
    let (upstreams, micros) = prepare_micros(&dir, &sf, &hosts[0]).await?;
    let name = app_name(&dir, &sf);
    let mut banner = vec![String::new(), format!("Gatehouse is up · {name}")];
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    banner.push(format!("  app        {scheme}://{}", hosts[0]));
    for m in &sf.micros {
        let how = match &m.backend {
            Backend::Run { command, .. } => format!("run `{command}`"),
            Backend::Upstream(u) => format!("upstream {u}"),
            Backend::Static { dir } => format!("static {dir}"),
        };
        let access = if m.policy.public {
            "public".to_owned()
        } else if m.policy.public_routes.is_empty() {
            "private".to_owned()
        } else {
            format!("private, {} public route(s)", m.policy.public_routes.len())
        };
        let keys = if m.policy.api_keys { ", API keys" } else { "" };
        banner.push(format!("  micro      {} at {} · {how} · {access}{keys}", m.name, m.mount));
    }
    for w in &sf.warnings {
        banner.push(format!("  note       {w}"));
    }
    let app = GatewayApp { name, hosts, environment: Environment::Live, spacefile: sf, upstreams };
    run_platform(&cfg, store, vec![app], banner, micros).await
}

/// The apps of `serve --config`, from their Spacefiles (micros must use `upstream:`).
pub fn configured_apps(cfg: &Config) -> Result<Vec<GatewayApp>> {
    let mut apps = vec![];
    for a in &cfg.apps {
        let sf = load_spacefile(&a.spacefile)?;
        let mut upstreams = HashMap::new();
        for m in &sf.micros {
            match &m.backend {
                Backend::Upstream(url) if url.starts_with("http://") => {
                    upstreams.insert(m.name.clone(), Upstream::Http(url.trim_start_matches("http://").to_owned()));
                }
                Backend::Static { dir } => {
                    let base = a.spacefile.parent().unwrap_or(Path::new("."));
                    upstreams.insert(m.name.clone(), Upstream::Static(base.join(dir)));
                }
                _ => bail!(
                    "{}: micro `{}` needs `upstream: http://…` under `serve` (use `gatehouse up` to run micros)",
                    a.spacefile.display(),
                    m.name
                ),
            }
        }
        let environment = match a.environment.as_deref() {
            None | Some("live") => Environment::Live,
            Some("test") => Environment::Test,
            Some(other) => bail!("app `{}`: environment `{other}` must be live or test", a.name),
        };
        let hosts = a.hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        apps.push(GatewayApp { name: a.name.clone(), hosts, environment, spacefile: sf, upstreams });
    }
    Ok(apps)
}
