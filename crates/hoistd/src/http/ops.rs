//! What operators and their tools read, beside the API: `/metrics` in the
//! Prometheus text format, `/readyz`, and one structured log line per
//! request. Neither route is part of the OpenAPI contract (like
//! `/openapi.json`), and neither needs a token: a scraper and a load
//! balancer hold none, and neither answer names a person.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hoist_api::{AccessState, GrantState, RequestState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::AppState;
use crate::broker::{self, Broker};
use crate::store::{self, GrantQuery, RequestQuery, Snapshot, Store, Tx};

/// How long `/readyz` waits for the database before calling it unreachable:
/// well under the probe timeouts load balancers use.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Request latency buckets, in seconds: from a health check (well under a
/// millisecond) to a provisioning call held up by a slow target.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often a scrape reads the store's figures (pending requests, active
/// grants, the reaper's lag, grants being removed, notices given up) again: scrapes in between, however many, use
/// the last ones, so `/metrics`, which takes no token, costs the database
/// one read per interval at most.
const COUNT_EVERY: Duration = Duration::from_secs(5);
/// How long a scrape waits for the store's figures before it answers with
/// the last known.
const COUNT_WAIT: Duration = Duration::from_secs(2);

/// The kinds of rows a purge forgets, as `hoistd_purged_rows` labels
/// them, in the order of [`broker::Purged`]'s fields.
const PURGED_KINDS: [&str; 4] = [
    "idempotency_keys",
    "workload_exchanges",
    "webhook_deliveries",
    "notification_deliveries",
];

/// Routes a probe or a scraper calls every few seconds: logged at debug, so
/// the request log shows people's calls.
const PROBES: [&str; 3] = ["/v1/health", "/readyz", "/metrics"];

/// A request's method as a label: one of HTTP's own, or `other`. A client
/// may send any token as a method, and a label taken from it as sent would
/// make a new series, kept for ever, per token.
fn method_label(method: &Method) -> &'static str {
    static KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("other", Method::as_str)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The route's template (`/v1/grants/{id}`), never the raw path, so the
    /// series stay few whatever ids and junk clients send.
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    /// [`crate::policy::Policy::digest`].
    digest: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    /// `in_use` by a transaction or snapshot, or `idle` in the pool.
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PurgeLabels {
    /// What was forgotten: `idempotency_keys`, `workload_exchanges`,
    /// `webhook_deliveries` or `notification_deliveries`.
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccessLabels {
    /// The grant's access at its target, or `none` for a role without one.
    access: String,
}

/// The broker's metrics. Counts of the store's state are read at each
/// scrape, so every instance on one database reports the same figures.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Histogram>,
    pending_requests: Gauge,
    active_grants: Family<AccessLabels, Gauge>,
    reaper_lag: Gauge<f64, AtomicU64>,
    removing_grants: Gauge,
    removal_lag: Gauge<f64, AtomicU64>,
    /// A running total read from the store, kept as a gauge (see `purged`).
    notifications_given_up: Gauge,
    clock_offset: Gauge<f64, AtomicU64>,
    stream_subscribers: Gauge,
    store_waiting: Gauge,
    store_wait: Histogram,
    store_connections: Family<ConnectionLabels, Gauge>,
    store_connections_max: Gauge,
    /// One series, at 1, labelled with the policy in force now.
    policy: Family<PolicyLabels, Gauge>,
    /// Held while a scrape sets `policy` and encodes, so that two at once
    /// never encode the family between one's clearing and its setting.
    encoding: std::sync::Mutex<()>,
    /// A running total, kept as a gauge: prometheus_client writes a
    /// counter's samples as `_total` under a family without it (OpenMetrics),
    /// which the Prometheus text format this route serves reads as a
    /// metric with no help or type.
    purged: Family<PurgeLabels, Gauge>,
    /// 1 when the last read of the store's figures answered, 0 when not
    /// (the figures read from it are then the last known).
    store_counted: Gauge,
    /// When a read of the store's figures last began.
    counted: std::sync::Mutex<Option<Instant>>,
    /// Whether a read of them is under way.
    counting: AtomicBool,
    /// The last readiness check: when, and what it found (`None`: ready).
    /// Held while a check runs, so probes at once share one check.
    readiness: tokio::sync::Mutex<Option<(Instant, Option<String>)>>,
    /// Set when a stop was asked for with a drain: `/readyz` fails while
    /// the server still serves, so load balancers take it out of rotation
    /// first (see `Server::drain`).
    pub(crate) draining: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hoistd");
        let requests = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS)
        });
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its response head, by method, route template and status (an event stream counts until it starts)",
            Unit::Seconds,
            requests.clone(),
        );
        let pending_requests = Gauge::default();
        registry.register(
            "pending_requests",
            "Requests waiting for a decision",
            pending_requests.clone(),
        );
        let active_grants = Family::<AccessLabels, Gauge>::default();
        registry.register(
            "active_grants",
            "Active grants, by the state of their access at the target (failed: provisioning failed and is being retried)",
            active_grants.clone(),
        );
        let reaper_lag = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "reaper_lag",
            "How long ago the oldest expiry not yet recorded fell due (0 when none is)",
            Unit::Seconds,
            reaper_lag.clone(),
        );
        let removing_grants = Gauge::default();
        registry.register(
            "removing_grants",
            "Grants that ended (revoked, expired) whose access at their target is still being removed: a removal the target keeps failing shows here",
            removing_grants.clone(),
        );
        let removal_lag = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "removal_lag",
            "How long ago the earliest-ended grant whose access is still being removed ended (0 when none is)",
            Unit::Seconds,
            removal_lag.clone(),
        );
        let clock_offset = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "clock_offset",
            "The database server's clock minus this instance's, read with each lease ask (PostgreSQL; 0 for SQLite, whose clock is this process's): an instance behind takes grants and credentials for live after they ended, and as leader records expiries late, by as much; one ahead ends them early",
            Unit::Seconds,
            clock_offset.clone(),
        );
        let notifications_given_up = Gauge::default();
        registry.register(
            "notifications_given_up",
            "Notifications never sent: retried for a day, or their channel left the policy (a running total, the same on every instance)",
            notifications_given_up.clone(),
        );
        let stream_subscribers = Gauge::default();
        registry.register(
            "event_stream_subscribers",
            "Event streams open on this instance",
            stream_subscribers.clone(),
        );
        let store_waiting = Gauge::default();
        registry.register(
            "store_transactions_waiting",
            "Transactions waiting for the database (for SQLite, its one connection; for a pool, a free connection)",
            store_waiting.clone(),
        );
        let store_wait = Histogram::new(LATENCY_BUCKETS);
        registry.register_with_unit(
            "store_transaction_wait",
            "Time a transaction waited to start: the database connection's contention",
            Unit::Seconds,
            store_wait.clone(),
        );
        let store_connections = Family::<ConnectionLabels, Gauge>::default();
        registry.register(
            "store_connections",
            "This instance's open connections to the database, by whether a transaction is using them (SQLite: its one writing connection)",
            store_connections.clone(),
        );
        let store_connections_max = Gauge::default();
        registry.register(
            "store_connections_max",
            "The most connections this instance opens to the database: the pool's size",
            store_connections_max.clone(),
        );
        let policy = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "policy_info",
            "The policy this instance enforces, by the first 16 hex digits of its file's SHA-256 (always 1): instances on one database that show different digests decide by different rules, so alert on count by (job) (count by (job, digest) (hoistd_policy_info)) > 1",
            policy.clone(),
        );
        let purged = Family::<PurgeLabels, Gauge>::default();
        registry.register(
            "purged_rows",
            "Rows this instance's purge forgot since it started, by what they were (kept only for a while: idempotency keys, workload exchanges, delivery logs); only grows, so read it with increase()",
            purged.clone(),
        );
        for kind in PURGED_KINDS {
            let _ = purged.get_or_create(&PurgeLabels { kind });
        }
        let store_counted = Gauge::default();
        registry.register(
            "store_counted",
            "1 when the last read of the database's figures (pending requests, active grants, reaper lag, grants being removed, notices given up) answered; 0 when it failed, and those figures are the last known",
            store_counted.clone(),
        );
        Metrics {
            policy,
            encoding: std::sync::Mutex::new(()),
            purged,
            store_counted,
            counted: std::sync::Mutex::new(None),
            counting: AtomicBool::new(false),
            readiness: tokio::sync::Mutex::new(None),
            draining: AtomicBool::new(false),
            registry,
            store_connections,
            store_connections_max,
            store_waiting,
            store_wait,
            requests,
            pending_requests,
            active_grants,
            reaper_lag,
            removing_grants,
            removal_lag,
            notifications_given_up,
            clock_offset,
            stream_subscribers,
        }
    }

    /// Records one answered request.
    fn observe(&self, method: &Method, route: &str, status: StatusCode, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method_label(method).to_string(),
                route: route.to_string(),
                status: status.as_u16(),
            })
            .observe(took.as_secs_f64());
    }

    /// `store`, with each transaction's wait for the database measured.
    pub fn meter(self: &Arc<Self>, store: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(MeteredStore {
            inner: store,
            metrics: Arc::clone(self),
        })
    }

    /// Counts what one purge forgot.
    pub fn count_purged(&self, purged: &broker::Purged) {
        for (kind, n) in PURGED_KINDS.into_iter().zip([
            purged.idempotency_keys,
            purged.exchanges,
            purged.webhook_deliveries,
            purged.notification_deliveries,
        ]) {
            self.purged
                .get_or_create(&PurgeLabels { kind })
                .inc_by(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The number of open event streams, kept by the stream slots.
    pub fn set_stream_subscribers(&self, open: usize) {
        self.stream_subscribers
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// Starts a read of the store's figures if one is due (once per
    /// [`COUNT_EVERY`]) and none is under way, off the runtime. A read, not
    /// a transaction: a scrape (which needs no token) must not take the
    /// turn every writer of every instance takes. A read that fails (the
    /// database down) is logged and shown as `hoistd_store_counted` 0, the
    /// figures staying the last known.
    fn start_count(self: &Arc<Self>, broker: &Arc<Broker>) -> Option<JoinHandle<()>> {
        {
            let mut counted = self
                .counted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if counted.is_some_and(|at| at.elapsed() < COUNT_EVERY)
                || self.counting.swap(true, Ordering::AcqRel)
            {
                return None;
            }
            *counted = Some(Instant::now());
        }
        let (metrics, broker) = (Arc::clone(self), Arc::clone(broker));
        Some(tokio::task::spawn_blocking(move || {
            match metrics.count(&broker) {
                Ok(()) => metrics.store_counted.set(1),
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "metrics: the database's figures not read");
                    metrics.store_counted.set(0)
                }
            };
            metrics.counting.store(false, Ordering::Release);
        }))
    }

    /// The store's figures: pending requests, active grants by where their
    /// access is, the reaper's lag, grants whose access is being removed,
    /// notices given up.
    fn count(&self, broker: &Broker) -> anyhow::Result<()> {
        let now = broker::now();
        let tx = broker.store().read()?;
        let pending = tx.requests(&RequestQuery {
            states: vec![RequestState::Pending],
            ..RequestQuery::default()
        })?;
        let mut active = tx.grants(&GrantQuery {
            states: vec![GrantState::Active],
            ..GrantQuery::default()
        })?;
        // Access past the end its target took counts as failed, as a read
        // shows it.
        for grant in &mut active {
            crate::broker::settle_grant(grant, now);
        }
        // Past its end, not yet recorded: the reaper's lag says so.
        active.retain(|grant| grant.state == GrantState::Active);
        // The one ended longest ago says how far behind the reaper is.
        let due = tx.due_grants(now, 1)?;
        let given_up = tx.notifications_given_up()?;
        let removing = tx.grants(&GrantQuery {
            access_states: vec![AccessState::Removing],
            ..GrantQuery::default()
        })?;
        drop(tx);
        self.notifications_given_up
            .set(i64::try_from(given_up).unwrap_or(i64::MAX));
        self.removing_grants
            .set(i64::try_from(removing.len()).unwrap_or(i64::MAX));
        let ended = removing
            .iter()
            .map(|grant| grant.ended_at.unwrap_or(grant.expires_at))
            .min();
        self.removal_lag.set(ended.map_or(0.0, |at| {
            (now - at).to_std().unwrap_or_default().as_secs_f64()
        }));
        self.pending_requests
            .set(i64::try_from(pending.len()).unwrap_or(i64::MAX));
        let by_access = |state: Option<AccessState>| {
            active
                .iter()
                .filter(|grant| grant.access.as_ref().map(|access| access.state) == state)
                .count()
        };
        for state in AccessState::ALL.into_iter().map(Some).chain([None]) {
            let label = state.map_or("none", AccessState::as_str);
            self.active_grants
                .get_or_create(&AccessLabels {
                    access: label.to_string(),
                })
                .set(i64::try_from(by_access(state)).unwrap_or(i64::MAX));
        }
        let lag = due
            .iter()
            .map(|grant| grant.expires_at)
            .min()
            .map_or(0.0, |at| {
                (now - at).to_std().unwrap_or_default().as_secs_f64()
            });
        self.reaper_lag.set(lag);
        Ok(())
    }

    /// Brings the connection gauges up to date and writes every metric in
    /// the text format.
    fn encode(&self, broker: &Broker) -> anyhow::Result<String> {
        let connections = broker.store().connections();
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        for (state, n) in [
            ("in_use", connections.in_use),
            ("idle", connections.open.saturating_sub(connections.in_use)),
        ] {
            self.store_connections
                .get_or_create(&ConnectionLabels { state })
                .set(count(n));
        }
        self.store_connections_max.set(count(connections.max));
        self.clock_offset.set(
            broker
                .store()
                .clock_offset()
                .map_or(0.0, chrono::TimeDelta::as_seconds_f64),
        );
        let _encoding = self
            .encoding
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.policy.clear();
        self.policy
            .get_or_create(&PolicyLabels {
                digest: broker.policy().digest().to_string(),
            })
            .set(1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// A store whose transactions are timed from asking to starting: the
/// waiting is the connection's (SQLite's one, or a pool's) contention,
/// whichever backend is behind it.
struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    /// Starts a transaction with `begin`, counted as waiting meanwhile and
    /// timed.
    fn waited<T>(&self, begin: impl FnOnce() -> T) -> T {
        let began = Instant::now();
        self.metrics.store_waiting.inc();
        let tx = begin();
        self.metrics.store_waiting.dec();
        self.metrics
            .store_wait
            .observe(began.elapsed().as_secs_f64());
        tx
    }
}

impl Store for MeteredStore {
    fn transaction(&self) -> store::Result<Box<dyn Tx + '_>> {
        self.waited(|| self.inner.transaction())
    }

    fn optimistic(&self) -> store::Result<Box<dyn Tx + '_>> {
        self.waited(|| self.inner.optimistic())
    }

    fn snapshot(&self) -> store::Result<Box<dyn Snapshot + '_>> {
        self.inner.snapshot()
    }

    fn barrier(&self) -> store::Result<()> {
        self.inner.barrier()
    }

    fn read(&self) -> store::Result<Box<dyn Tx + '_>> {
        self.waited(|| self.inner.read())
    }

    // Every other method is the inner store's own: a default here would
    // make each instance on a shared database its own leader, deaf to the
    // others.
    fn ready(&self) -> store::Result<()> {
        self.inner.ready()
    }

    fn lead(&self, holder: &str, term: Duration, renewing: bool) -> store::Result<Option<i64>> {
        self.inner.lead(holder, term, renewing)
    }

    fn shared(&self) -> bool {
        self.inner.shared()
    }

    fn listen(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<store::Announcement>> {
        self.inner.listen()
    }

    fn clock_offset(&self) -> Option<chrono::TimeDelta> {
        self.inner.clock_offset()
    }

    fn measure_clock(&self) -> crate::store::Result<Option<chrono::TimeDelta>> {
        self.inner.measure_clock()
    }

    fn clock_doubt(&self) -> chrono::TimeDelta {
        self.inner.clock_doubt()
    }

    fn resign(&self, holder: &str) -> store::Result<()> {
        self.inner.resign(holder)
    }

    fn connections(&self) -> store::Connections {
        self.inner.connections()
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let broker = Arc::clone(&state.broker);
    let metrics = Arc::clone(&state.metrics);
    // A read of the store's figures that takes longer than COUNT_WAIT (a
    // database that does not answer) goes on without this scrape, which
    // shows the last known ones, as every scrape does while it runs.
    if let Some(counting) = metrics.start_count(&broker) {
        let _ = tokio::time::timeout(COUNT_WAIT, counting).await;
    }
    match tokio::task::spawn_blocking(move || metrics.encode(&broker)).await {
        Ok(Ok(text)) => {
            let mut response = text.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        Ok(Err(err)) => {
            tracing::error!(error = %format!("{err:#}"), "metrics not read");
            super::refused(
                hoist_api::ErrorCode::Internal,
                "internal error; the broker log has the details",
            )
        }
        Err(err) => {
            tracing::error!(error = %err, "metrics task failed");
            super::refused(
                hoist_api::ErrorCode::Internal,
                "internal error; the broker log has the details",
            )
        }
    }
}

/// `GET /readyz`: 200 when this instance can serve, 503 with the reason
/// when it cannot (the database does not answer, or it is stopping).
/// Liveness stays `/v1/health`, which never touches the database, so a
/// database outage takes instances out of rotation without getting them
/// restarted.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let stopping = state.shutdown.clone();
    let metrics = Arc::clone(&state.metrics);
    // On a task of its own, so a probe that gives up (its client gone)
    // still leaves its answer for the next.
    let check = tokio::spawn(async move {
        let mut last = state.metrics.readiness.lock().await;
        match &*last {
            Some((at, problem)) if at.elapsed() < READY_KEPT => problem.clone(),
            _ => {
                let problem = ready_problem(&state).await;
                *last = Some((Instant::now(), problem.clone()));
                problem
            }
        }
    });
    let problem = check
        .await
        .unwrap_or_else(|_| Some("the readiness check failed".to_string()));
    // A probe answered while the server drains (begun before the stop, or
    // on a connection kept open) must not keep it in rotation.
    let problem = if *stopping.borrow() {
        Some("hoistd is stopping".to_string())
    } else if metrics.draining.load(Ordering::Relaxed) {
        Some("hoistd is draining: it stops shortly".to_string())
    } else {
        problem
    };
    match problem {
        None => Json(serde_json::json!({"status": "ready"})).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "reason": reason})),
        )
            .into_response(),
    }
}

/// How long one readiness check answers every probe: a flood of probes
/// (the route needs no token) costs the database one check a second.
const READY_KEPT: Duration = Duration::from_secs(1);

/// Why this instance cannot serve now, if it cannot.
async fn ready_problem(state: &AppState) -> Option<String> {
    let broker = Arc::clone(&state.broker);
    let check = tokio::task::spawn_blocking(move || broker.store().ready());
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(Ok(()))) => None,
        Ok(Ok(Err(
            err @ (crate::store::StoreError::MigrationsPending { .. }
            | crate::store::StoreError::TooNew { .. }),
        ))) => {
            tracing::warn!(error = %err, "not ready: the schema is not this hoistd's");
            Some(err.to_string())
        }
        Ok(Ok(Err(err))) => {
            tracing::warn!(error = %err, "not ready: the database does not answer");
            Some("the database does not answer".to_string())
        }
        Ok(Err(err)) => {
            tracing::error!(error = %err, "readiness check failed");
            Some("the readiness check failed".to_string())
        }
        Err(_) => Some(format!(
            "the database did not answer within {}",
            humantime::format_duration(READY_TIMEOUT)
        )),
    }
}

/// Times each request for the latency histogram and writes its log line:
/// method, route template, path (never the query, which may carry what a
/// client should not have put there), status and duration. The lines have
/// their own tracing target, `access_log`, outside `hoistd`'s, so a filter
/// turns them on or off by themselves (`HOISTD_LOG=hoistd=info` has none).
pub async fn observe(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let took = started.elapsed();
    let status = response.status();
    metrics.observe(&method, &route, status, took);
    let duration_ms = took.as_secs_f64() * 1000.0;
    if PROBES.contains(&route.as_str()) {
        tracing::debug!(target: "access_log", method = %method, route, path, status = status.as_u16(), duration_ms, "request");
    } else {
        tracing::info!(target: "access_log", method = %method, route, path, status = status.as_u16(), duration_ms, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind a purge forgets is a series from the start, at zero, and
    /// each purge adds what it forgot to its kind.
    #[test]
    fn purges_are_counted_by_kind() {
        let metrics = Metrics::new();
        let text = |metrics: &Metrics| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
            text
        };
        let before = text(&metrics);
        for kind in PURGED_KINDS {
            assert!(
                before.contains(&format!("hoistd_purged_rows{{kind=\"{kind}\"}} 0\n")),
                "{before}"
            );
        }
        let purged = broker::Purged {
            idempotency_keys: 3,
            exchanges: 2,
            webhook_deliveries: 0,
            notification_deliveries: 1_000,
        };
        metrics.count_purged(&purged);
        metrics.count_purged(&purged);
        let after = text(&metrics);
        for (kind, n) in [
            ("idempotency_keys", 6),
            ("workload_exchanges", 4),
            ("webhook_deliveries", 0),
            ("notification_deliveries", 2_000),
        ] {
            assert!(
                after.contains(&format!("hoistd_purged_rows{{kind=\"{kind}\"}} {n}\n")),
                "{after}"
            );
        }
    }
}
