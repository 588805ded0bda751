//! The TUI benchmarks' scenarios: states as the client holds them after
//! loading a large broker (10,000 roles, 10,000 past requests, 50 grants),
//! built by hand from the wire types and driven through the real `update`.

#![allow(dead_code)]

use chrono::{DateTime, TimeDelta, Utc};
use hoist::app::state::{Connection, Screen, State};
use hoist::app::{Action, update};
use hoist_api::{
    AccessRequest, ApprovalRule, Decision, Grant, GrantState, Me, RequestKind, RequestState,
    Review, Role, TicketRule,
};

/// The frame size every figure is measured at.
pub const WIDTH: u16 = 200;
pub const HEIGHT: u16 = 60;

/// What a user types into the Roles filter, one key at a time.
pub const QUERY: &str = "prod-db";

const ENVS: [(&str, &str); 5] = [
    ("prod", "Production"),
    ("staging", "Staging"),
    ("dev", "Development"),
    ("qa", "QA"),
    ("sandbox", "Sandbox"),
];
const SERVICES: [(&str, &str, &str); 10] = [
    ("db", "database", "postgres"),
    ("k8s", "Kubernetes cluster", "k8s"),
    ("deploy", "deploy pipeline", "deploy"),
    ("logs", "logs and traces", "logs"),
    ("kafka", "Kafka cluster", "kafka"),
    ("redis", "Redis cache", "redis"),
    ("s3", "object storage", "s3"),
    ("vault", "Vault secrets", "vault"),
    ("ssh", "bastion shell", "ssh"),
    ("billing", "billing service", "svc"),
];
const ACCESS: [(&str, &str); 4] = [
    ("admin", "admin"),
    ("read", "read-only"),
    ("write", "read-write"),
    ("operator", "operator"),
];

/// A fixed instant, so every run draws the same text.
pub fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000, 500_000_000).unwrap_or_default()
}

/// `n` roles with ids like `prod-db-admin-0042`, spread over environments,
/// services and access levels as a large organisation's policy would be;
/// in id order, as the broker lists them.
pub fn roles(n: usize) -> Vec<Role> {
    let mut roles: Vec<Role> = (0..n)
        .map(|i| {
            let (env, env_name) = ENVS[i % ENVS.len()];
            let (service, service_name, scheme) = SERVICES[(i / ENVS.len()) % SERVICES.len()];
            let (access, access_name) = ACCESS[(i / (ENVS.len() * SERVICES.len())) % ACCESS.len()];
            let unit = i / (ENVS.len() * SERVICES.len() * ACCESS.len());
            let approvals = if env == "prod" { 1 } else { 0 };
            Role {
                id: format!("{env}-{service}-{access}-{unit:04}"),
                name: format!("{env_name} {service_name} {access_name} (unit {unit})"),
                description: format!(
                    "{access_name} access to the {service_name} of unit {unit} in {env_name}. \
                     Every use is audited; keep it short."
                ),
                scope: format!("{scheme}://{service}-{env}-{unit:04}.internal"),
                default_duration_secs: 1800,
                max_duration_secs: 7200,
                approval: ApprovalRule {
                    approvals,
                    approver_groups: vec![format!("{env}-approvers")],
                    approvers: vec!["bob".into(), "dave".into()],
                },
                break_glass: env == "prod",
                ticket: TicketRule {
                    required: env == "prod",
                    pattern: Some("(INC|CHG)-[0-9]+".into()),
                },
                min_justification: 20,
                target: None,
                tier: None,
            }
        })
        .collect();
    roles.sort_by(|a, b| a.id.cmp(&b.id));
    received(&roles)
}

/// The values as the client holds them: deserialised from a response body,
/// so their strings lie in memory in list order, as they do in the client.
pub fn received<T: serde::Serialize + serde::de::DeserializeOwned>(values: &T) -> T {
    let body = serde_json::to_vec(values).unwrap_or_default();
    serde_json::from_slice(&body).unwrap_or_else(|err| panic!("round trip: {err}"))
}

/// `n` past requests by alice on those roles, newest first: mostly finished
/// (expired, denied, cancelled, timed out), a few pending, with reviews.
pub fn requests(roles: &[Role], n: usize, now: DateTime<Utc>) -> Vec<AccessRequest> {
    const STATES: [RequestState; 8] = [
        RequestState::Expired,
        RequestState::Expired,
        RequestState::Expired,
        RequestState::Denied,
        RequestState::Cancelled,
        RequestState::TimedOut,
        RequestState::Revoked,
        RequestState::Expired,
    ];
    (0..n)
        .map(|i| {
            let role = &roles[(i * 7919) % roles.len()];
            let created = now - TimeDelta::minutes(17 * i as i64 + 3);
            let state = if i < 3 {
                RequestState::Pending
            } else {
                STATES[i % STATES.len()]
            };
            let reviews = match state {
                RequestState::Pending | RequestState::Cancelled | RequestState::TimedOut => vec![],
                RequestState::Denied => vec![Review {
                    reviewer: "bob".into(),
                    decision: Decision::Deny,
                    comment: Some("Use the read-only role for this, please.".into()),
                    at: created + TimeDelta::minutes(4),
                }],
                _ => vec![Review {
                    reviewer: if i % 2 == 0 { "bob" } else { "dave" }.into(),
                    decision: Decision::Approve,
                    comment: None,
                    at: created + TimeDelta::minutes(2),
                }],
            };
            AccessRequest {
                id: format!("req_{i:012}"),
                kind: if i % 11 == 0 {
                    RequestKind::Extension
                } else {
                    RequestKind::Access
                },
                role: role.id.clone(),
                role_name: role.name.clone(),
                requester: "alice".into(),
                justification: format!(
                    "Rotate the replication slot on unit {i} after the failover drill (CHG-{})",
                    1000 + i
                ),
                ticket: Some(format!("CHG-{}", 1000 + i)),
                incident: (i % 13 == 0).then(|| format!("INC-{}", 500 + i)),
                duration_secs: 1800,
                starts_at: None,
                break_glass: i % 97 == 0,
                state,
                created_at: created,
                updated_at: created + TimeDelta::minutes(5),
                lapses_at: (state == RequestState::Pending).then(|| created + TimeDelta::hours(2)),
                approvals_required: role.approval.approvals,
                reviews,
                claim: None,
                grant_id: None,
                reason: match state {
                    RequestState::Denied => Some("Use the read-only role for this, please.".into()),
                    RequestState::Revoked => Some("done early".into()),
                    _ => None,
                },
                acknowledgement: None,
                tier: None,
                approvers: Vec::new(),
                signed_in_at: None,
            }
        })
        .collect::<Vec<_>>()
}

/// `n` live grants for alice, ending between 6 and 120 minutes from `now`.
pub fn grants(roles: &[Role], n: usize, now: DateTime<Utc>) -> Vec<Grant> {
    let mut grants: Vec<Grant> = (0..n)
        .map(|i| {
            let role = &roles[(i * 31) % roles.len()];
            let length = TimeDelta::minutes(30 + (i as i64 % 4) * 30);
            let starts_at = now - TimeDelta::minutes(i as i64 % 25) - TimeDelta::seconds(7);
            Grant {
                id: format!("gr_{i:012}"),
                request_id: format!("req_{i:012}"),
                role: role.id.clone(),
                role_name: role.name.clone(),
                holder: "alice".into(),
                starts_at,
                expires_at: starts_at + length,
                state: GrantState::Active,
                ended_at: None,
                revoked_by: None,
                revoke_reason: None,
                break_glass: i % 9 == 0,
                ticket: Some(format!("CHG-{}", 2000 + i)),
                incident: None,
                justification: "Planned failover of db-prod-1 and the follow-up vacuum".into(),
                access: None,
            }
        })
        .collect();
    grants.sort_by_key(|g| g.expires_at);
    grants
}

/// A loaded state: alice, live, with these lists.
pub fn loaded(roles: Vec<Role>, requests: Vec<AccessRequest>, grants: Vec<Grant>) -> State {
    let now = epoch();
    let mut state = State::new("http://127.0.0.1:8700".into(), now);
    state.loaded = true;
    state.connection = Connection::Live;
    state.me = Some(Me {
        user: "alice".into(),
        display_name: "Alice Adams".into(),
        groups: vec!["engineers".into()],
        approver_for: vec![],
        auditor: false,
    });
    state.roles = roles;
    state.requests = requests;
    state.grants = grants;
    state.favourites = ["prod-db-admin-0000", "staging-k8s-admin-0003"]
        .into_iter()
        .map(String::from)
        .collect();
    update(&mut state, Action::Resize(WIDTH, HEIGHT));
    // Computes the visible roles exactly as loading does.
    update(&mut state, Action::GoTo(Screen::Roles));
    update(&mut state, Action::StartFilter);
    update(&mut state, Action::Back);
    state
}

/// Roles: 10,000 eligible roles, the filter open with `QUERY` typed; the
/// 500 requests and 5 grants the client holds mark their rows.
pub fn roles_screen() -> State {
    let roles = roles(10_000);
    let requests = requests(&roles, 500, epoch());
    let grants = grants(&roles, 5, epoch());
    let mut state = loaded(roles, requests, grants);
    update(&mut state, Action::StartFilter);
    for c in QUERY.chars() {
        update(&mut state, Action::Input(c));
    }
    state
}

/// Requests: 10,000 rows of history.
pub fn requests_screen() -> State {
    let roles = roles(10_000);
    let requests = requests(&roles, 10_000, epoch());
    let mut state = loaded(roles, requests, vec![]);
    update(&mut state, Action::GoTo(Screen::Requests));
    // Mid-list, so the window is not simply the first page.
    state.cursors.requests = 4_321;
    state
}

/// Grants: 50 live countdowns.
pub fn grants_screen() -> State {
    let roles = roles(1_000);
    let grants = grants(&roles, 50, epoch());
    let mut state = loaded(roles, vec![], grants);
    update(&mut state, Action::GoTo(Screen::Grants));
    state
}

/// Filtering: 10,000 roles on the Roles screen, the filter open and empty.
pub fn filter_screen() -> State {
    let roles = roles(10_000);
    let requests = requests(&roles, 500, epoch());
    let grants = grants(&roles, 5, epoch());
    let mut state = loaded(roles, requests, grants);
    update(&mut state, Action::StartFilter);
    state
}

/// The keys of one round of filtering: `QUERY` typed, then erased.
pub fn keystrokes() -> Vec<Action> {
    let mut keys: Vec<Action> = QUERY.chars().map(Action::Input).collect();
    keys.extend(std::iter::repeat_n(Action::Backspace, QUERY.len()));
    keys
}

/// Moves the clock on one second, as the once-a-second tick does.
pub fn tick(state: &mut State) {
    let now = state.now + TimeDelta::seconds(1);
    update(state, Action::Tick(now));
}

/// Percentiles of a set of samples, in microseconds.
pub struct Summary {
    pub count: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

pub fn summarise(samples: &mut [std::time::Duration]) -> Summary {
    samples.sort_unstable();
    let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        us(samples[rank - 1])
    };
    let total: f64 = samples.iter().map(|d| us(*d)).sum();
    Summary {
        count: samples.len(),
        p50_us: at(0.50),
        p99_us: at(0.99),
        max_us: samples.last().map_or(0.0, |d| us(*d)),
        mean_us: total / samples.len().max(1) as f64,
    }
}
