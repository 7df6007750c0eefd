//! `mailroute-relay --listen ADDR:PORT --metrics-listen ADDR:PORT --hostname NAME
//! --relay-networks CIDR[,CIDR…] (--table DIR | --manifests PATH…)`; every
//! option can also come from an environment variable `MAILROUTE_…`.

use clap::Parser;
use relay::downstream::pool::PoolLimits;
use relay::downstream::{Settings, Timeouts};
use relay::identity::{AuthSettings, TokenReviewer};
use relay::session::Port;
use relay::table::Tables;
use relay::{Config, Shared, http, networks, server, table};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;

/// Where the routing table comes from: exactly one.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct TableSource {
    /// Directory holding the table (a mounted ConfigMap or `mailroute compile -o`).
    #[arg(long, env = "MAILROUTE_TABLE")]
    table: Option<PathBuf>,
    /// Compile these manifests (files or directories) once, at start
    /// (repeatable). A file that cannot be read or compiled stops the relay.
    #[arg(long, env = "MAILROUTE_MANIFESTS", value_delimiter = ',')]
    manifests: Vec<PathBuf>,
    /// Watch the table's ConfigMaps (the operator's --table-name) through the
    /// Kubernetes API: changes arrive in about a second, where a mounted
    /// volume can lag a minute or more. Needs the `kube` cargo feature (on
    /// by default).
    #[arg(long, env = "MAILROUTE_CONFIGMAP")]
    configmap: Option<String>,
}

#[derive(Parser)]
#[command(
    name = "mailroute-relay",
    version,
    about = "SMTP relay that routes every recipient by the mailroute table"
)]
struct Options {
    /// SMTP listen address.
    #[arg(long, env = "MAILROUTE_LISTEN", default_value = "0.0.0.0:25")]
    listen: SocketAddr,
    /// Submission (RFC 6409, usually 0.0.0.0:587): STARTTLS, then AUTH,
    /// before any MAIL. Needs --tls-cert.
    #[arg(long, env = "MAILROUTE_SUBMISSION_LISTEN", requires = "tls_cert")]
    submission_listen: Option<SocketAddr>,
    /// Submission over implicit TLS (RFC 8314, usually 0.0.0.0:465). Needs --tls-cert.
    #[arg(long, env = "MAILROUTE_SUBMISSIONS_LISTEN", requires = "tls_cert")]
    submissions_listen: Option<SocketAddr>,
    /// Check ServiceAccount tokens given as AUTH passwords with the
    /// TokenReview API (RBAC: create tokenreviews). Needs the `kube` feature.
    #[arg(long, env = "MAILROUTE_TOKEN_REVIEW")]
    token_review: bool,
    /// The audience a token must be issued for (the pod's projected token's
    /// `audience`): a token for the API server or another service is refused.
    #[arg(long, env = "MAILROUTE_TOKEN_AUDIENCE", default_value = "mailroute")]
    token_audience: String,
    /// Where SendingGrants' password Secrets are mounted: DIR/<secret>/htpasswd.
    #[arg(
        long,
        env = "MAILROUTE_PASSWORDS_DIR",
        default_value = "/etc/mailroute/passwords"
    )]
    passwords_dir: PathBuf,
    /// Seconds a checked token or password is believed: a deleted
    /// ServiceAccount or a changed password takes effect within it.
    #[arg(long, env = "MAILROUTE_AUTH_CACHE_SECONDS", default_value_t = 60)]
    auth_cache_seconds: u64,
    /// Failed AUTH attempts one client address may make per
    /// --auth-failure-window; past it, AUTH gets 421 4.7.0 until the window ends.
    #[arg(long, env = "MAILROUTE_AUTH_FAILURE_LIMIT", default_value_t = 5)]
    auth_failure_limit: u32,
    /// Seconds.
    #[arg(long, env = "MAILROUTE_AUTH_FAILURE_WINDOW", default_value_t = 300)]
    auth_failure_window: u64,
    /// Milliseconds before a failed AUTH is answered (slows guessing).
    #[arg(long, env = "MAILROUTE_AUTH_FAILURE_DELAY_MS", default_value_t = 1000)]
    auth_failure_delay_ms: u64,
    /// Write the authenticated principal into the Received header (off by
    /// default, as Postfix's smtpd_sasl_authenticated_header: it tells the
    /// recipients who sent, which a principal's name may not be meant for).
    #[arg(long, env = "MAILROUTE_RECEIVED_PRINCIPAL")]
    received_principal: bool,
    /// HTTP listen address for /metrics, /healthz and /readyz.
    #[arg(long, env = "MAILROUTE_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    metrics_listen: SocketAddr,
    /// Our host name: greeting, EHLO to next hops, Received headers.
    #[arg(long, env = "MAILROUTE_HOSTNAME")]
    hostname: String,
    /// Clients that may relay to any domain.
    #[arg(
        long,
        env = "MAILROUTE_RELAY_NETWORKS",
        default_value = "127.0.0.0/8,::1"
    )]
    relay_networks: String,
    #[command(flatten)]
    source: TableSource,
    /// With --manifests: the namespace whose objects to compile (needed when
    /// the files hold several). With --configmap: where the table is
    /// (default: the pod's own in a cluster, else the kubeconfig context's).
    #[arg(long, env = "MAILROUTE_NAMESPACE")]
    namespace: Option<String>,
    /// Our own addresses, for ForwardsToSelf when compiling --manifests.
    #[arg(long = "self", env = "MAILROUTE_SELF", value_delimiter = ',')]
    self_addresses: Vec<String>,
    /// Refuse (554 5.4.6) a message with more Received headers than this.
    #[arg(long, env = "MAILROUTE_HOP_LIMIT", default_value_t = 50)]
    hop_limit: usize,
    #[arg(long, env = "MAILROUTE_MAX_RECIPIENTS", default_value_t = 100)]
    max_recipients: usize,
    /// Next hops one transaction may use at once, each with a connection of
    /// its own; a recipient for one more gets 452 4.5.3 and is retried by
    /// the sender in a new transaction.
    #[arg(long, env = "MAILROUTE_MAX_NEXT_HOPS", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    max_next_hops: u16,
    /// Bytes: the largest message a delivery status notification returns
    /// whole (when the sender asked RET=FULL and may relay); a larger one
    /// returns its header section only (Postfix's bounce_size_limit).
    #[arg(long, env = "MAILROUTE_BOUNCE_SIZE_LIMIT", default_value_t = 50_000)]
    bounce_size_limit: usize,
    /// Bytes.
    #[arg(long, env = "MAILROUTE_MAX_MESSAGE_SIZE", default_value_t = 25 * 1024 * 1024)]
    max_message_size: usize,
    /// Longest message line in bytes, CRLF included.
    #[arg(long, env = "MAILROUTE_MAX_LINE_LENGTH", default_value_t = 8192)]
    max_line_length: usize,
    #[arg(
        long,
        env = "MAILROUTE_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 50
    )]
    max_connections_per_client: usize,
    /// Threads that serve sessions; 0: one per CPU the relay may use (a CPU
    /// quota counts). Fewer threads cost less per message (fewer wake-ups
    /// between them) and cap what one relay can do: docs/performance.md
    /// has the figures.
    #[arg(long, env = "MAILROUTE_WORKER_THREADS", default_value_t = 0)]
    worker_threads: usize,
    /// Seconds to wait for a command (RFC 5321 §4.5.3.2: 5 minutes).
    #[arg(long, env = "MAILROUTE_COMMAND_TIMEOUT", default_value_t = 300)]
    command_timeout: u64,
    /// Seconds to wait for each block of message data (3 minutes).
    #[arg(long, env = "MAILROUTE_DATA_TIMEOUT", default_value_t = 180)]
    data_timeout: u64,
    /// Seconds to connect to a next hop.
    #[arg(long, env = "MAILROUTE_CONNECT_TIMEOUT", default_value_t = 30)]
    connect_timeout: u64,
    /// PEM certificate chain for STARTTLS (with --tls-key); reloaded when it changes.
    #[arg(long, env = "MAILROUTE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for STARTTLS.
    #[arg(long, env = "MAILROUTE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM file of the CAs whose client certificates the relay verifies
    /// (with --tls-cert): a client may present one (never must), and a
    /// verified one identifies it to SendingGrants' clientCertificate.
    #[arg(long, env = "MAILROUTE_CLIENT_CA", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Seconds between looks at the certificate files.
    #[arg(long, env = "MAILROUTE_TLS_RELOAD_INTERVAL", default_value_t = 10)]
    tls_reload_interval: u64,
    /// Seconds a draining relay (SIGTERM) waits for transactions in flight.
    #[arg(long, env = "MAILROUTE_DRAIN_TIMEOUT", default_value_t = 30)]
    drain_timeout: u64,
    /// Seconds to go on accepting after SIGTERM, with /readyz saying 503,
    /// before the listener closes: the time a Service or load balancer needs
    /// to stop sending new connections (the Helm chart sets 5).
    #[arg(long, env = "MAILROUTE_SHUTDOWN_DELAY", default_value_t = 0)]
    shutdown_delay: u64,
    /// Milliseconds between looks at --table for a new version.
    #[arg(long, env = "MAILROUTE_RELOAD_INTERVAL_MS", default_value_t = 250)]
    reload_interval_ms: u64,
    /// Idle next-hop connections kept per next hop for reuse (0: no reuse).
    #[arg(long, env = "MAILROUTE_POOL_MAX_IDLE", default_value_t = 32)]
    pool_max_idle: usize,
    /// Seconds an idle next-hop connection is kept.
    #[arg(long, env = "MAILROUTE_POOL_IDLE_TIMEOUT", default_value_t = 5)]
    pool_idle_timeout: u64,
    /// Seconds after which a next-hop connection is not reused any more.
    #[arg(long, env = "MAILROUTE_POOL_MAX_AGE", default_value_t = 300)]
    pool_max_age: u64,
    /// Where connectors' AUTH Secrets are mounted: DIR/<secret>/username and password.
    #[arg(
        long,
        env = "MAILROUTE_AUTH_DIR",
        default_value = "/etc/mailroute/auth"
    )]
    auth_dir: PathBuf,
    /// PEM file of extra trust anchors for verified TLS to next hops.
    #[arg(long, env = "MAILROUTE_NEXT_HOP_CA")]
    next_hop_ca: Option<PathBuf>,
    /// DNS servers (IP:PORT) for MX lookups; default: /etc/resolv.conf.
    #[arg(
        long = "dns-server",
        env = "MAILROUTE_DNS_SERVERS",
        value_delimiter = ','
    )]
    dns_servers: Vec<SocketAddr>,
    /// Expect a PROXY protocol v2 header on every connection (behind a load
    /// balancer that sends one; the port must not be reachable otherwise).
    #[arg(long, env = "MAILROUTE_PROXY_PROTOCOL")]
    proxy_protocol: bool,
    /// Report which table this relay serves in the RoutingTable
    /// `NAMESPACE/NAME` (the operator's --table-name in the table's
    /// namespace), as pod --pod-name, whenever that changes. Needs the
    /// `kube` cargo feature.
    #[arg(
        long,
        env = "MAILROUTE_REPORT_TO",
        value_name = "NAMESPACE/NAME",
        requires = "pod_name"
    )]
    report_to: Option<String>,
    /// This relay's pod name (the downward API's metadata.name).
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// This relay's pod namespace (metadata.namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pod_namespace: Option<String>,
    /// Port of MX hosts (25; another value only makes sense for tests).
    #[arg(long, env = "MAILROUTE_MX_PORT", default_value_t = 25)]
    mx_port: u16,
}

fn extra_roots(path: Option<&PathBuf>) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("--next-hop-ca {}: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("--next-hop-ca {}: no certificate", path.display());
    }
    Ok(certs)
}

fn main() -> ExitCode {
    relay::memory::limit_arenas();
    match run(Options::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailroute-relay: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(o: Options) -> anyhow::Result<()> {
    ops::init_json_logs();
    let relay_networks = networks::parse_list(&o.relay_networks)
        .map_err(|e| anyhow::anyhow!("--relay-networks: {e}"))?;
    let config = Config {
        hostname: o.hostname,
        relay_networks,
        hop_limit: o.hop_limit,
        max_recipients: o.max_recipients,
        max_next_hops: usize::from(o.max_next_hops),
        bounce_size_limit: o.bounce_size_limit,
        max_message_size: o.max_message_size,
        max_line_length: o.max_line_length,
        max_connections_per_client: o.max_connections_per_client,
        command_timeout: Duration::from_secs(o.command_timeout),
        data_timeout: Duration::from_secs(o.data_timeout),
        downstream: Settings {
            timeouts: Timeouts {
                connect: Duration::from_secs(o.connect_timeout),
                ..Timeouts::default()
            },
            pool: PoolLimits {
                max_idle: o.pool_max_idle,
                idle_timeout: Duration::from_secs(o.pool_idle_timeout),
                max_age: Duration::from_secs(o.pool_max_age),
            },
            auth_dir: o.auth_dir,
            extra_roots: extra_roots(o.next_hop_ca.as_ref())?,
            dns_servers: o.dns_servers,
            mx_port: o.mx_port,
        },
        proxy_protocol: o.proxy_protocol,
        auth: AuthSettings {
            passwords_dir: o.passwords_dir,
            cache_ttl: Duration::from_secs(o.auth_cache_seconds),
            failure_limit: o.auth_failure_limit,
            failure_window: Duration::from_secs(o.auth_failure_window),
            failure_delay: Duration::from_millis(o.auth_failure_delay_ms),
            record_principal: o.received_principal,
        },
        ..Config::default()
    };
    let tables = Arc::new(Tables::default());
    // Manifests are compiled once, before any port opens: a relay that
    // cannot have a table from them must not start.
    if !o.source.manifests.is_empty() {
        let loaded = table::load_manifests(
            &o.source.manifests,
            o.namespace.as_deref(),
            &o.self_addresses,
        )
        .map_err(|e| anyhow::anyhow!("--manifests: {e}"))?;
        let loaded = Ok(Arc::new(loaded));
        table::report(&loaded);
        tables.record(&loaded);
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if o.worker_threads > 0 {
        runtime.worker_threads(o.worker_threads);
    }
    runtime.enable_all().build()?.block_on(async move {
        let smtp = tokio::net::TcpListener::bind(o.listen).await.map_err(|e| anyhow::anyhow!("--listen {}: {e}", o.listen))?;
        let http = tokio::net::TcpListener::bind(o.metrics_listen)
            .await
            .map_err(|e| anyhow::anyhow!("--metrics-listen {}: {e}", o.metrics_listen))?;
        tracing::info!(listen = %o.listen, metrics = %o.metrics_listen, "mailroute-relay started");
        if let Some(dir) = o.source.table {
            tokio::spawn(table::watch_dir(dir, tables.clone(), Duration::from_millis(o.reload_interval_ms)));
        } else if let Some(name) = o.source.configmap {
            watch_configmap(name, o.namespace, tables.clone()).await?;
        }
        if let Some(to) = o.report_to {
            let (namespace, table) = to
                .split_once('/')
                .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
                .ok_or_else(|| anyhow::anyhow!("--report-to {to}: expected NAMESPACE/NAME"))?;
            let pod = o.pod_name.unwrap_or_default();
            report_served(namespace, table, pod, o.pod_namespace, &tables).await?;
        }
        let tls = match (o.tls_cert, o.tls_key) {
            (Some(cert), Some(key)) => {
                let tls = relay::tls::Tls::with_client_ca(cert, key, o.client_ca)
                    .map_err(|e| anyhow::anyhow!("--tls-cert/--tls-key/--client-ca: {e}"))?;
                tokio::spawn(tls.clone().watch(Duration::from_secs(o.tls_reload_interval)));
                Some(tls)
            }
            _ => None,
        };
        let tokens = if o.token_review { Some(token_reviewer(o.token_audience).await?) } else { None };
        let shared = Shared::build(config, tables, tls, tokens);
        tokio::spawn(http::serve(http, shared.clone()));
        let mut accepting = vec![tokio::spawn(server::serve(smtp, shared.clone()))];
        for (addr, port) in [(o.submission_listen, Port::Submission), (o.submissions_listen, Port::Submissions)] {
            let Some(addr) = addr else { continue };
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("{port:?} listener {addr}: {e}"))?;
            tracing::info!(listen = %addr, service = ?port, "submission listener started");
            accepting.push(tokio::spawn(server::serve_on(listener, shared.clone(), port)));
        }
        ops::shutdown_signal().await;
        if o.shutdown_delay > 0 {
            tracing::info!(delay_s = o.shutdown_delay, "shutting down: unready, still accepting until new connections stop coming");
            shared.leave();
            tokio::time::sleep(Duration::from_secs(o.shutdown_delay)).await;
        }
        tracing::info!(timeout_s = o.drain_timeout, "draining: no new connections, finishing transactions in flight");
        shared.drain();
        for a in accepting {
            let _ = a.await;
        }
        if shared.sessions_ended(Duration::from_secs(o.drain_timeout)).await {
            tracing::info!("drained; exiting");
        } else {
            tracing::warn!("drain timeout passed with sessions open; exiting (their next hops get no final dot and discard)");
        }
        Ok(())
    })
}

#[cfg(feature = "kube")]
async fn token_reviewer(audience: String) -> anyhow::Result<Arc<dyn TokenReviewer>> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("--token-review: no Kubernetes API: {e}"))?;
    tracing::info!(audience = %audience, "ServiceAccount tokens are checked with TokenReview");
    Ok(Arc::new(
        relay::identity::tokens::kube_api::KubeTokenReview { client, audience },
    ))
}

#[cfg(not(feature = "kube"))]
async fn token_reviewer(_: String) -> anyhow::Result<Arc<dyn TokenReviewer>> {
    anyhow::bail!("--token-review: this mailroute-relay was built without the `kube` cargo feature")
}

#[cfg(feature = "kube")]
async fn watch_configmap(
    name: String,
    namespace: Option<String>,
    tables: Arc<Tables>,
) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("--configmap {name}: no Kubernetes API: {e}"))?;
    let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
    tracing::info!(configmap = %name, namespace = %namespace, "watching the table through the API");
    tokio::spawn(relay::configmap::run(client, namespace, name, tables));
    Ok(())
}

#[cfg(not(feature = "kube"))]
async fn watch_configmap(name: String, _: Option<String>, _: Arc<Tables>) -> anyhow::Result<()> {
    anyhow::bail!(
        "--configmap {name}: this mailroute-relay was built without the `kube` cargo feature \
         (it is on by default; rebuild without --no-default-features), so it cannot read the Kubernetes API"
    )
}

#[cfg(feature = "kube")]
async fn report_served(
    namespace: &str,
    table: &str,
    pod: String,
    pod_namespace: Option<String>,
    tables: &Tables,
) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("--report-to {namespace}/{table}: no Kubernetes API: {e}"))?;
    let reporter = relay::report::Reporter {
        namespace: namespace.to_owned(),
        table: table.to_owned(),
        pod,
        pod_namespace,
    };
    tracing::info!(routing_table = %format!("{namespace}/{table}"), pod = %reporter.pod, "reporting the table served");
    tokio::spawn(relay::report::run(client, reporter, tables.served()));
    Ok(())
}

#[cfg(not(feature = "kube"))]
async fn report_served(
    namespace: &str,
    table: &str,
    _: String,
    _: Option<String>,
    _: &Tables,
) -> anyhow::Result<()> {
    anyhow::bail!(
        "--report-to {namespace}/{table}: this mailroute-relay was built without the `kube` cargo feature"
    )
}
