//! A stateful fake of the part of Microsoft Graph that Entra PIM uses, on
//! loopback, for contract tests of hoist's Entra backend.
//!
//! It follows the documented state machine of PIM schedule requests
//! (`PendingApproval` -> `Provisioned` -> an active instance after a
//! propagation delay the test controls; `Denied`, `Canceled`, `Revoked`),
//! answers Graph's error bodies for the documented failures
//! (`RoleAssignmentRequestPolicyValidationFailed` and its rules,
//! `RoleAssignmentRequestAcrsValidationFailed` with a claims value,
//! `ActiveDurationTooShort`, `RoleAssignmentExists`,
//! `RoleAssignmentRequestExists`, 409 on a second decision), and refuses what
//! Graph would: tokens not signed by the test OpenID provider, missing
//! scopes, unknown paths and unknown properties. No Entra tenant was
//! consulted: its shapes are written from Graph's API reference.
//!
//! Every object it answers starts from one of our fixtures
//! (`tests/entra/fixtures/{v1.0,beta}/<schema>.json`, each an object of
//! that Graph type as the reference pages show one), with the fields this
//! world decides written over it; `tests/entra/openapi.rs` checks the
//! fixtures, and every exchange, against Graph's OpenAPI description.
//!
//! Include it with `#[path = "../support/graph.rs"] mod graph;`.
//!
//! One file because the fake is one world: its state machine, its errors and
//! its routes read each other's state.

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]
// An error here is the HTTP answer itself, as large as any other.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

/// What a user can be eligible for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Directory { role: String, scope: String },
    Group { group: String, access: String },
}

/// The end-user activation rules of a role's PIM policy.
#[derive(Debug, Clone)]
pub struct Rules {
    pub max_duration: &'static str,
    pub justification: bool,
    pub ticket: bool,
    pub mfa: bool,
    /// Approvers' user ids; empty means no approval.
    pub approvers: Vec<String>,
    /// An authentication context (`c1`) the sign-in must satisfy.
    pub acrs: Option<&'static str>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            max_duration: "PT8H",
            justification: true,
            ticket: false,
            mfa: false,
            approvers: Vec::new(),
            acrs: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub upn: String,
    pub name: String,
}

#[derive(Debug, Clone)]
struct Request {
    id: String,
    action: String,
    principal: String,
    target: Target,
    justification: Option<String>,
    ticket: Option<String>,
    ticket_system: Option<String>,
    duration: Option<String>,
    start: DateTime<Utc>,
    status: String,
    created: DateTime<Utc>,
    completed: Option<DateTime<Utc>>,
    approval: Option<String>,
    schedule: String,
}

#[derive(Debug, Clone)]
struct Instance {
    id: String,
    principal: String,
    target: Target,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    schedule: String,
}

#[derive(Debug, Clone)]
struct Step {
    id: String,
    approvers: Vec<String>,
    status: String,
    result: String,
    reviewed_by: Option<String>,
    justification: Option<String>,
    reviewed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct Approval {
    request: String,
    steps: Vec<Step>,
}

/// One request hoist sent, as received, and what the fake answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query, exactly as sent.
    pub uri: String,
    pub body: Option<Value>,
    pub status: u16,
    pub answer: Option<Value>,
}

/// One of our fixtures of a Graph object: `VERSION/SCHEMA`.
pub fn fixture(name: &str) -> Value {
    let text = match name {
        "v1.0/error" => include_str!("../entra/fixtures/v1.0/error.json"),
        "v1.0/microsoft.graph.user" => {
            include_str!("../entra/fixtures/v1.0/microsoft.graph.user.json")
        }
        "v1.0/microsoft.graph.group" => {
            include_str!("../entra/fixtures/v1.0/microsoft.graph.group.json")
        }
        "v1.0/microsoft.graph.unifiedRoleDefinition" => {
            include_str!("../entra/fixtures/v1.0/microsoft.graph.unifiedRoleDefinition.json")
        }
        "v1.0/microsoft.graph.unifiedRoleEligibilityScheduleInstance" => include_str!(
            "../entra/fixtures/v1.0/microsoft.graph.unifiedRoleEligibilityScheduleInstance.json"
        ),
        "v1.0/microsoft.graph.unifiedRoleAssignmentScheduleInstance" => include_str!(
            "../entra/fixtures/v1.0/microsoft.graph.unifiedRoleAssignmentScheduleInstance.json"
        ),
        "v1.0/microsoft.graph.unifiedRoleAssignmentScheduleRequest" => include_str!(
            "../entra/fixtures/v1.0/microsoft.graph.unifiedRoleAssignmentScheduleRequest.json"
        ),
        "v1.0/microsoft.graph.privilegedAccessGroupEligibilityScheduleInstance" => include_str!(
            "../entra/fixtures/v1.0/microsoft.graph.privilegedAccessGroupEligibilityScheduleInstance.json"
        ),
        "v1.0/microsoft.graph.privilegedAccessGroupAssignmentScheduleInstance" => include_str!(
            "../entra/fixtures/v1.0/microsoft.graph.privilegedAccessGroupAssignmentScheduleInstance.json"
        ),
        "v1.0/microsoft.graph.privilegedAccessGroupAssignmentScheduleRequest" => include_str!(
            "../entra/fixtures/v1.0/microsoft.graph.privilegedAccessGroupAssignmentScheduleRequest.json"
        ),
        "v1.0/microsoft.graph.unifiedRoleManagementPolicyAssignment" => include_str!(
            "../entra/fixtures/v1.0/microsoft.graph.unifiedRoleManagementPolicyAssignment.json"
        ),
        "v1.0/microsoft.graph.approval" => {
            include_str!("../entra/fixtures/v1.0/microsoft.graph.approval.json")
        }
        "beta/microsoft.graph.approval" => {
            include_str!("../entra/fixtures/beta/microsoft.graph.approval.json")
        }
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A fixture with `fields` written over it.
fn from_fixture(name: &str, fields: serde_json::Map<String, Value>) -> Value {
    let mut value = fixture(name);
    let object = value.as_object_mut().unwrap();
    for (key, field) in fields {
        object.insert(key, field);
    }
    value
}

fn fields(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

#[derive(Default)]
struct World {
    issuer: String,
    audience: String,
    keys: Option<jsonwebtoken::jwk::JwkSet>,
    users: Vec<User>,
    roles: HashMap<String, (String, String)>,
    groups: HashMap<String, (String, String)>,
    eligible: Vec<(String, Target)>,
    rules: HashMap<Target, Rules>,
    requests: Vec<Request>,
    instances: Vec<Instance>,
    approvals: HashMap<String, Approval>,
    /// Activations provisioned whose instance has not appeared yet.
    propagating: Vec<String>,
    /// Seconds an activation must have been active before deactivation.
    min_active: i64,
    /// What deactivations answer, if not `Revoked`: then the role stays
    /// active (a deactivation Entra could not carry out).
    deactivation_status: Option<String>,
    received: Vec<Received>,
    next: u64,
    /// Calls still to be answered 429 with `Retry-After: 1`, as Graph
    /// throttles.
    throttled: u32,
    /// The `Retry-After` those answers give, in seconds (1 unless set).
    retry_after: u32,
    /// Writes carried out whose answers are lost (a 503 instead).
    answers_lost: u32,
    /// Reads of one schedule request answered 404, as from a replica
    /// that has not seen it yet.
    lagging_reads: u32,
    /// Reads of one schedule request answered 503, as from a Graph that
    /// made a request and then stopped answering for a while.
    failing_reads: u32,
    /// Reading role management policies is refused (403), as it is to
    /// someone with no directory reader's role.
    policies_refused: bool,
}

impl World {
    fn id(&mut self) -> String {
        self.next += 1;
        format!("{:08x}-0000-4000-8000-{:012x}", self.next, self.next)
    }
}

/// The running fake, stopped when dropped.
pub struct FakeGraph {
    /// `http://127.0.0.1:PORT`: an Entra profile's `graph` setting, and the
    /// resource its access tokens are for.
    pub url: String,
    world: Arc<Mutex<World>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGraph {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
pub const BOB: &str = "b0b00000-0000-4000-8000-000000000002";
pub const DAVE: &str = "da7e0000-0000-4000-8000-000000000004";
/// Directory roles, by their template ids.
pub const USER_ADMIN: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";
pub const EXCHANGE_ADMIN: &str = "29232cdf-9323-42fd-ade2-1d097af3e4de";
pub const SECURITY_ADMIN: &str = "194ae4cb-b126-40b2-bd5b-6091b380977d";
pub const PROD_GROUP: &str = "9e1a7c11-0000-4000-8000-00000000c0de";

impl FakeGraph {
    /// Binds a loopback port; [`FakeGraph::serve`] starts answering once the
    /// provider's issuer is known (its tokens name this URL as audience).
    pub async fn bind() -> (tokio::net::TcpListener, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        (listener, url)
    }

    /// A tenant with alice (engineer), bob and dave (approvers), three
    /// directory roles and one group, and these rules:
    /// - User Administrator: justification, at most 2 hours, no approval;
    /// - Exchange Administrator: justification and ticket, approval by bob or dave;
    /// - Security Administrator: an authentication context (`c1`);
    /// - prod-dba (group) membership: justification, at most 1 hour.
    pub async fn serve(listener: tokio::net::TcpListener, url: String, issuer: &str) -> FakeGraph {
        let mut world = World {
            issuer: issuer.to_string(),
            audience: url.clone(),
            min_active: 0,
            deactivation_status: None,
            ..World::default()
        };
        for (id, upn, name) in [
            (ALICE, "alice@contoso.example", "Alice"),
            (BOB, "bob@contoso.example", "Bob"),
            (DAVE, "dave@contoso.example", "Dave"),
        ] {
            world.users.push(User {
                id: id.into(),
                upn: upn.into(),
                name: name.into(),
            });
        }
        world.roles.insert(
            USER_ADMIN.into(),
            (
                "User Administrator".into(),
                "Can manage all aspects of users and groups.".into(),
            ),
        );
        world.roles.insert(
            EXCHANGE_ADMIN.into(),
            (
                "Exchange Administrator".into(),
                "Can manage all aspects of Exchange.".into(),
            ),
        );
        world.roles.insert(
            SECURITY_ADMIN.into(),
            (
                "Security Administrator".into(),
                "Can read and manage security settings.".into(),
            ),
        );
        world.groups.insert(
            PROD_GROUP.into(),
            (
                "prod-dba".into(),
                "Database administrators of production".into(),
            ),
        );
        let dir = |role: &str| Target::Directory {
            role: role.into(),
            scope: "/".into(),
        };
        let group = Target::Group {
            group: PROD_GROUP.into(),
            access: "member".into(),
        };
        for target in [
            dir(USER_ADMIN),
            dir(EXCHANGE_ADMIN),
            dir(SECURITY_ADMIN),
            group.clone(),
        ] {
            world.eligible.push((ALICE.into(), target));
        }
        world.rules.insert(
            dir(USER_ADMIN),
            Rules {
                max_duration: "PT2H",
                ..Rules::default()
            },
        );
        world.rules.insert(
            dir(EXCHANGE_ADMIN),
            Rules {
                ticket: true,
                approvers: vec![BOB.into(), DAVE.into()],
                ..Rules::default()
            },
        );
        world.rules.insert(
            dir(SECURITY_ADMIN),
            Rules {
                acrs: Some("c1"),
                ..Rules::default()
            },
        );
        world.rules.insert(
            group,
            Rules {
                max_duration: "PT1H",
                ..Rules::default()
            },
        );
        let world = Arc::new(Mutex::new(world));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&world));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeGraph { url, world, server }
    }

    /// Every activation provisioned so far appears as an active instance:
    /// Entra's propagation, done.
    pub fn propagate(&self) {
        let mut world = self.world.lock().unwrap();
        let pending = std::mem::take(&mut world.propagating);
        for id in pending {
            let Some(request) = world.requests.iter().find(|r| r.id == id).cloned() else {
                continue;
            };
            let secs = request
                .duration
                .as_deref()
                .and_then(hoist::backend::entra::policy::iso_duration)
                .unwrap_or(3600);
            let instance_id = world.id();
            world.instances.push(Instance {
                id: instance_id,
                principal: request.principal.clone(),
                target: request.target.clone(),
                start: request.start,
                end: request.start + TimeDelta::seconds(secs as i64),
                schedule: request.schedule.clone(),
            });
        }
    }

    /// How many activations are provisioned but not yet active.
    pub fn propagating(&self) -> usize {
        self.world.lock().unwrap().propagating.len()
    }

    /// Entra refuses a deactivation within this many seconds of activation
    /// (five minutes in Entra; none here unless a test asks).
    pub fn set_min_active(&self, secs: i64) {
        self.world.lock().unwrap().min_active = secs;
    }

    /// Answers deactivations with `status` (`Failed`, say) and leaves the
    /// role active.
    pub fn answer_deactivations(&self, status: &str) {
        self.world.lock().unwrap().deactivation_status = Some(status.into());
    }

    /// Activating the prod-dba membership needs the approval of `approvers`.
    pub fn require_group_approval(&self, approvers: &[&str]) {
        let mut world = self.world.lock().unwrap();
        let group = Target::Group {
            group: PROD_GROUP.into(),
            access: "member".into(),
        };
        if let Some(rules) = world.rules.get_mut(&group) {
            rules.approvers = approvers.iter().map(|a| a.to_string()).collect();
        }
    }

    /// Refuses (403) every read of a role management policy.
    pub fn refuse_policy_reads(&self) {
        self.world.lock().unwrap().policies_refused = true;
    }

    /// Answers the next `calls` calls 429 (`TooManyRequests`, `Retry-After: 1`).
    pub fn throttle(&self, calls: u32) {
        self.throttle_for(calls, 1);
    }

    /// Answers the next `calls` calls 429 with `Retry-After: secs`.
    pub fn throttle_for(&self, calls: u32, secs: u32) {
        let mut world = self.world.lock().unwrap();
        world.throttled = calls;
        world.retry_after = secs;
    }

    /// Carries out the next `writes` writes but answers each 503, as when
    /// Graph made a change and the answer did not come back.
    pub fn lose_answers(&self, writes: u32) {
        self.world.lock().unwrap().answers_lost = writes;
    }

    /// Answers the next `reads` reads of one schedule request 404, as
    /// Graph does from a replica that has not yet seen a new request.
    pub fn lag_reads(&self, reads: u32) {
        self.world.lock().unwrap().lagging_reads = reads;
    }

    /// Answers the next `reads` reads of one schedule request 503.
    pub fn fail_reads(&self, reads: u32) {
        self.world.lock().unwrap().failing_reads = reads;
    }

    /// Makes `user` eligible for directory role `role` at `scope` (an
    /// administrative unit's, say).
    pub fn make_eligible(&self, user: &str, role: &str, scope: &str) {
        self.world.lock().unwrap().eligible.push((
            user.into(),
            Target::Directory {
                role: role.into(),
                scope: scope.into(),
            },
        ));
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.world.lock().unwrap().received.clone()
    }

    /// How many schedule requests with `action` (`selfActivate`,
    /// `selfDeactivate`, ...) were made.
    pub fn made(&self, action: &str) -> usize {
        let world = self.world.lock().unwrap();
        world.requests.iter().filter(|r| r.action == action).count()
    }

    /// The statuses of every schedule request, oldest first.
    pub fn statuses(&self) -> Vec<(String, String)> {
        let world = self.world.lock().unwrap();
        world
            .requests
            .iter()
            .map(|r| (r.action.clone(), r.status.clone()))
            .collect()
    }

    /// Files a pending activation as `principal` would, straight into the
    /// state (another person's request for an approver to decide).
    pub fn file_pending(&self, principal: &str, role: &str, justification: &str) -> String {
        let mut world = self.world.lock().unwrap();
        let id = world.id();
        let approval = world.id();
        let schedule = world.id();
        let target = Target::Directory {
            role: role.into(),
            scope: "/".into(),
        };
        let approvers = world
            .rules
            .get(&target)
            .map(|r| r.approvers.clone())
            .unwrap_or_default();
        let now = Utc::now();
        world.requests.push(Request {
            id: id.clone(),
            action: "selfActivate".into(),
            principal: principal.into(),
            target,
            justification: Some(justification.into()),
            ticket: Some("CHG-7".into()),
            ticket_system: Some("ServiceNow".into()),
            duration: Some("PT1H".into()),
            start: now,
            status: "PendingApproval".into(),
            created: now,
            completed: None,
            approval: Some(approval.clone()),
            schedule,
        });
        let step = world.id();
        world.approvals.insert(
            approval,
            Approval {
                request: id.clone(),
                steps: vec![Step {
                    id: step,
                    approvers,
                    status: "InProgress".into(),
                    result: "NotReviewed".into(),
                    reviewed_by: None,
                    justification: None,
                    reviewed_at: None,
                }],
            },
        );
        id
    }
}

/// Who a valid token names, and what it carries.
struct Caller {
    user: User,
    scopes: Vec<String>,
    acrs: Vec<String>,
    mfa: bool,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut body = fixture("v1.0/error");
    body["error"]["code"] = json!(code);
    body["error"]["message"] = json!(message);
    body["error"]["innerError"]["date"] = json!(Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string());
    (status, axum::Json(body)).into_response()
}

fn bad(code: &str, message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, code, message)
}

async fn keys(world: &Arc<Mutex<World>>) -> Option<jsonwebtoken::jwk::JwkSet> {
    if let Some(keys) = world.lock().unwrap().keys.clone() {
        return Some(keys);
    }
    let issuer = world.lock().unwrap().issuer.clone();
    let discovery: Value = reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let keys: jsonwebtoken::jwk::JwkSet = reqwest::get(discovery["jwks_uri"].as_str()?)
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    world.lock().unwrap().keys = Some(keys.clone());
    Some(keys)
}

async fn authenticate(world: &Arc<Mutex<World>>, headers: &HeaderMap) -> Result<Caller, Response> {
    let unauthorized = |message: &str| {
        error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("Access token is empty."))?;
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| unauthorized("IDX14100: JWT is not well formed."))?;
    let keys = keys(world)
        .await
        .ok_or_else(|| unauthorized("signing keys unavailable"))?;
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| keys.find(kid))
        .ok_or_else(|| unauthorized("IDX10503: Signature validation failed."))?;
    let decoding = jsonwebtoken::DecodingKey::from_jwk(key).map_err(|_| unauthorized("bad key"))?;
    let (issuer, audience) = {
        let w = world.lock().unwrap();
        (w.issuer.clone(), w.audience.clone())
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<Value>(token, &decoding, &validation)
        .map_err(|e| unauthorized(&format!("Lifetime validation failed or token invalid: {e}")))?
        .claims;
    let upn = claims["upn"].as_str().unwrap_or_default();
    let user = world
        .lock()
        .unwrap()
        .users
        .iter()
        .find(|u| u.upn == upn)
        .cloned()
        .ok_or_else(|| unauthorized("the token names no user of this tenant"))?;
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
            Value::String(text) => text.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        }
    };
    Ok(Caller {
        user,
        scopes: list(&claims["scp"]),
        acrs: list(&claims["acrs"]),
        mfa: list(&claims["amr"]).iter().any(|m| m == "mfa"),
    })
}

fn needs(caller: &Caller, scopes: &[&str]) -> Result<(), Response> {
    if scopes.iter().any(|s| caller.scopes.iter().any(|c| c == s)) {
        Ok(())
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "Missing scope permissions on the request. API requires one of '{}'.",
                scopes.join(", ")
            ),
        ))
    }
}

fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

async fn handle(
    State(world): State<Arc<Mutex<World>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => Some(v),
            Err(_) => return bad("BadRequest", "Unable to read JSON request payload."),
        }
    };
    let (throttled, retry_after) = {
        let mut world = world.lock().unwrap();
        let throttled = world.throttled > 0;
        world.throttled = world.throttled.saturating_sub(1);
        (throttled, world.retry_after.max(1))
    };
    let response = match authenticate(&world, &headers).await {
        Ok(_) if throttled => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Too many requests.",
            );
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from(retry_after));
            response
        }
        Ok(caller) => match route(&world, &caller, &method, &uri, body.clone()) {
            Ok(response) if method != Method::GET && world.lock().unwrap().answers_lost > 0 => {
                world.lock().unwrap().answers_lost -= 1;
                drop(response);
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The service is unavailable.",
                )
            }
            Ok(response) | Err(response) => response,
        },
        Err(response) => response,
    };
    // Kept with the request, for the contract test to check both.
    let (parts, answer) = response.into_parts();
    let bytes = axum::body::to_bytes(answer, usize::MAX)
        .await
        .unwrap_or_default();
    world.lock().unwrap().received.push(Received {
        method: method.to_string(),
        uri: uri.to_string(),
        body,
        status: parts.status.as_u16(),
        answer: serde_json::from_slice(&bytes).ok(),
    });
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

const DIR: &str = "roleManagement/directory";
const GRP: &str = "identityGovernance/privilegedAccess/group";

fn route(
    world: &Arc<Mutex<World>>,
    caller: &Caller,
    method: &Method,
    uri: &Uri,
    body: Option<Value>,
) -> Result<Response, Response> {
    let path = uri.path();
    let q = query(uri);
    let mut w = world.lock().unwrap();
    let ok = |value: Value| Ok(axum::Json(value).into_response());
    let list = |items: Vec<Value>| Ok(axum::Json(json!({ "value": items })).into_response());
    let expands = |what: &str| {
        q.get("$expand")
            .is_some_and(|e| e.split(',').any(|x| x == what))
    };
    let (version, rest) = path
        .trim_start_matches('/')
        .split_once('/')
        .ok_or_else(|| bad("BadRequest", "Invalid version."))?;
    let segments: Vec<&str> = rest.split('/').collect();
    let mine = "filterByCurrentUser(on='principal')";
    let approver = "filterByCurrentUser(on='approver')";
    match (version, method.as_str(), segments.as_slice()) {
        ("v1.0", "GET", ["me"]) => {
            needs(caller, &["User.Read"])?;
            let user = &caller.user;
            let mut me = from_fixture(
                "v1.0/microsoft.graph.user",
                fields(json!({
                    "id": user.id, "userPrincipalName": user.upn, "mail": user.upn,
                    "displayName": user.name, "givenName": user.name,
                })),
            );
            // `$select` answers those properties alone, as Graph does.
            if let Some(select) = q.get("$select") {
                let wanted: Vec<&str> = select.split(',').collect();
                me.as_object_mut()
                    .unwrap()
                    .retain(|key, _| key.starts_with("@odata.") || wanted.contains(&key.as_str()));
            }
            ok(me)
        }
        // What I may activate.
        (
            "v1.0",
            "GET",
            [
                "roleManagement",
                "directory",
                "roleEligibilityScheduleInstances",
                on,
            ],
        ) if *on == mine => {
            needs(
                caller,
                &[
                    "RoleEligibilitySchedule.Read.Directory",
                    "RoleEligibilitySchedule.ReadWrite.Directory",
                ],
            )?;
            let items = eligible(&w, caller, false, expands("roleDefinition"));
            list(items)
        }
        (
            "v1.0",
            "GET",
            [
                "identityGovernance",
                "privilegedAccess",
                "group",
                "eligibilityScheduleInstances",
                on,
            ],
        ) if *on == mine => {
            needs(
                caller,
                &[
                    "PrivilegedEligibilitySchedule.Read.AzureADGroup",
                    "PrivilegedEligibilitySchedule.ReadWrite.AzureADGroup",
                ],
            )?;
            let items = eligible(&w, caller, true, expands("group"));
            list(items)
        }
        // What I hold.
        (
            "v1.0",
            "GET",
            [
                "roleManagement",
                "directory",
                "roleAssignmentScheduleInstances",
                on,
            ],
        ) if *on == mine => {
            needs(
                caller,
                &[
                    "RoleAssignmentSchedule.Read.Directory",
                    "RoleAssignmentSchedule.ReadWrite.Directory",
                ],
            )?;
            list(instances(&w, caller, false, expands("roleDefinition")))
        }
        (
            "v1.0",
            "GET",
            [
                "identityGovernance",
                "privilegedAccess",
                "group",
                "assignmentScheduleInstances",
                on,
            ],
        ) if *on == mine => {
            needs(
                caller,
                &[
                    "PrivilegedAssignmentSchedule.Read.AzureADGroup",
                    "PrivilegedAssignmentSchedule.ReadWrite.AzureADGroup",
                ],
            )?;
            list(instances(&w, caller, true, expands("group")))
        }
        // Requests: mine, waiting for me, one, new, cancelled.
        ("v1.0", "GET", [.., collection, on])
            if (*on == mine || *on == approver) && is_requests(rest, collection) =>
        {
            let group = rest.starts_with(GRP);
            request_scopes(caller, group)?;
            let pending_only = match q.get("$filter").map(String::as_str) {
                None => false,
                Some("status eq 'PendingApproval'") => true,
                Some(other) => {
                    return Err(bad(
                        "BadRequest",
                        &format!("Invalid filter clause: {other}"),
                    ));
                }
            };
            let as_approver = *on == approver;
            let items: Vec<Value> = w
                .requests
                .iter()
                .filter(|r| is_group(&r.target) == group)
                .filter(|r| {
                    if as_approver {
                        r.status == "PendingApproval" && waiting_for(&w, r, &caller.user.id)
                    } else {
                        r.principal == caller.user.id
                    }
                })
                .filter(|r| !pending_only || r.status == "PendingApproval")
                .map(|r| request_json(&w, r, &q))
                .collect();
            list(items)
        }
        ("v1.0", "GET", [.., collection, id]) if is_requests(rest, collection) => {
            let group = rest.starts_with(GRP);
            request_scopes(caller, group)?;
            if w.lagging_reads > 0 {
                w.lagging_reads -= 1;
                return Err(error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFound",
                    "The resource was not found.",
                ));
            }
            if w.failing_reads > 0 {
                w.failing_reads -= 1;
                return Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The service is temporarily unavailable.",
                ));
            }
            let r = w
                .requests
                .iter()
                .find(|r| r.id == *id && is_group(&r.target) == group)
                .ok_or_else(|| {
                    error(
                        StatusCode::NOT_FOUND,
                        "ResourceNotFound",
                        "The resource was not found.",
                    )
                })?;
            if r.principal != caller.user.id
                && !waiting_for(&w, r, &caller.user.id)
                && !decided_by(&w, r, &caller.user.id)
            {
                return Err(error(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "The caller may not read this request.",
                ));
            }
            ok(request_json(&w, r, &q))
        }
        ("v1.0", "POST", [.., collection]) if is_requests(rest, collection) => {
            let group = rest.starts_with(GRP);
            request_scopes(caller, group)?;
            create(&mut w, caller, group, body.unwrap_or(Value::Null), &q)
        }
        ("v1.0", "POST", [.., collection, id, "cancel"]) if is_requests(rest, collection) => {
            let group = rest.starts_with(GRP);
            request_scopes(caller, group)?;
            let r = w
                .requests
                .iter_mut()
                .find(|r| r.id == *id && is_group(&r.target) == group)
                .ok_or_else(|| {
                    error(
                        StatusCode::NOT_FOUND,
                        "ResourceNotFound",
                        "The resource was not found.",
                    )
                })?;
            if r.principal != caller.user.id {
                return Err(error(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "Only the requester may cancel.",
                ));
            }
            if !matches!(r.status.as_str(), "PendingApproval" | "Granted") {
                return Err(bad(
                    "InvalidRequestStatus",
                    "Only pending requests can be cancelled.",
                ));
            }
            r.status = "Canceled".into();
            r.completed = Some(Utc::now());
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        // Policies.
        ("v1.0", "GET", ["policies", "roleManagementPolicyAssignments"]) => {
            if w.policies_refused {
                return Err(error(
                    StatusCode::FORBIDDEN,
                    "Authorization_RequestDenied",
                    "Insufficient privileges to complete the operation.",
                ));
            }
            let filter = q.get("$filter").cloned().unwrap_or_default();
            let (target, group) = parse_policy_filter(&filter).ok_or_else(|| {
                bad(
                    "BadRequest",
                    &format!(
                        "The filter must name scopeId, scopeType and roleDefinitionId: {filter}"
                    ),
                )
            })?;
            if group {
                needs(
                    caller,
                    &[
                        "RoleManagementPolicy.Read.AzureADGroup",
                        "RoleManagementPolicy.ReadWrite.AzureADGroup",
                    ],
                )?;
            } else {
                needs(
                    caller,
                    &[
                        "RoleManagementPolicy.Read.Directory",
                        "RoleManagementPolicy.ReadWrite.Directory",
                    ],
                )?;
            }
            if q.get("$expand").map(String::as_str) != Some("policy($expand=rules)") {
                return Err(bad("BadRequest", "expected $expand=policy($expand=rules)"));
            }
            // A directory role's one policy is assigned at the tenant ("/"),
            // whatever scope the role is held at: asked at another scope,
            // Graph finds none.
            if matches!(&target, Target::Directory { scope, .. } if scope != "/") {
                return list(Vec::new());
            }
            let rules = w.rules.get(&target).cloned().unwrap_or_default();
            list(vec![policy_json(&w, &target, &rules)])
        }
        // Approvals: directory roles on beta, groups on v1.0.
        (v, "GET", [.., "roleAssignmentApprovals" | "assignmentApprovals", id])
            if approvals_here(v, rest) =>
        {
            request_scopes(caller, rest.starts_with(GRP))?;
            let approval = w.approvals.get(*id).ok_or_else(|| {
                error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFound",
                    "The approval was not found.",
                )
            })?;
            ok(approval_json(
                v,
                id,
                approval,
                &caller.user.id,
                &w,
                expands(stages_of(v)),
            ))
        }
        (
            v,
            "PATCH",
            [
                ..,
                "roleAssignmentApprovals" | "assignmentApprovals",
                id,
                stages,
                step,
            ],
        ) if approvals_here(v, rest) && *stages == stages_of(v) => {
            request_scopes(caller, rest.starts_with(GRP))?;
            decide(&mut w, caller, id, step, body.unwrap_or(Value::Null))
        }
        _ => Err(bad(
            "BadRequest",
            &format!(
                "Resource not found for the segment '{}'.",
                segments.last().unwrap_or(&"")
            ),
        )),
    }
}

/// An approval's stages: `steps` on beta, `stages` on v1.0.
fn stages_of(version: &str) -> &'static str {
    if version == "beta" { "steps" } else { "stages" }
}

fn approvals_here(version: &str, rest: &str) -> bool {
    (version == "beta" && rest.starts_with(&format!("{DIR}/roleAssignmentApprovals/")))
        || (version == "v1.0" && rest.starts_with(&format!("{GRP}/assignmentApprovals/")))
}

fn is_requests(rest: &str, collection: &str) -> bool {
    (rest.starts_with(DIR) && *collection == *"roleAssignmentScheduleRequests")
        || (rest.starts_with(GRP) && *collection == *"assignmentScheduleRequests")
}

fn is_group(target: &Target) -> bool {
    matches!(target, Target::Group { .. })
}

fn request_scopes(caller: &Caller, group: bool) -> Result<(), Response> {
    if group {
        needs(
            caller,
            &["PrivilegedAssignmentSchedule.ReadWrite.AzureADGroup"],
        )
    } else {
        needs(caller, &["RoleAssignmentSchedule.ReadWrite.Directory"])
    }
}

fn waiting_for(w: &World, r: &Request, user: &str) -> bool {
    r.approval
        .as_ref()
        .and_then(|a| w.approvals.get(a))
        .is_some_and(|a| {
            a.steps
                .iter()
                .any(|s| s.status == "InProgress" && s.approvers.iter().any(|x| x == user))
        })
}

fn decided_by(w: &World, r: &Request, user: &str) -> bool {
    r.approval
        .as_ref()
        .and_then(|a| w.approvals.get(a))
        .is_some_and(|a| {
            a.steps
                .iter()
                .any(|s| s.approvers.iter().any(|x| x == user))
        })
}

fn target_fields(w: &World, target: &Target, expand: bool) -> serde_json::Map<String, Value> {
    let mut map = serde_json::Map::new();
    match target {
        Target::Directory { role, scope } => {
            map.insert("roleDefinitionId".into(), json!(role));
            map.insert("directoryScopeId".into(), json!(scope));
            map.insert("appScopeId".into(), Value::Null);
            if expand {
                let (name, description) = w.roles.get(role).cloned().unwrap_or_default();
                map.insert(
                    "roleDefinition".into(),
                    from_fixture(
                        "v1.0/microsoft.graph.unifiedRoleDefinition",
                        fields(json!({
                            "id": role, "displayName": name, "description": description,
                            "templateId": role
                        })),
                    ),
                );
            }
        }
        Target::Group { group, access } => {
            map.insert("groupId".into(), json!(group));
            map.insert("accessId".into(), json!(access));
            if expand {
                let (name, description) = w.groups.get(group).cloned().unwrap_or_default();
                map.insert(
                    "group".into(),
                    from_fixture(
                        "v1.0/microsoft.graph.group",
                        fields(json!({
                            "id": group, "displayName": name, "description": description,
                            "mailNickname": name
                        })),
                    ),
                );
            }
        }
    }
    map
}

fn eligible(w: &World, caller: &Caller, groups: bool, expand: bool) -> Vec<Value> {
    w.eligible
        .iter()
        .enumerate()
        .filter(|(_, (who, target))| *who == caller.user.id && is_group(target) == groups)
        .map(|(i, (_, target))| {
            let mut item = target_fields(w, target, expand);
            item.insert(
                "id".into(),
                json!(format!("e{i:07}-0000-4000-8000-000000000000")),
            );
            item.insert("principalId".into(), json!(caller.user.id));
            item.insert("startDateTime".into(), json!("2026-01-01T00:00:00Z"));
            item.insert("endDateTime".into(), Value::Null);
            let schedule = json!(format!("5c4e1a6b-0000-4000-8000-{i:012}"));
            if groups {
                item.insert("eligibilityScheduleId".into(), schedule);
                from_fixture(
                    "v1.0/microsoft.graph.privilegedAccessGroupEligibilityScheduleInstance",
                    item,
                )
            } else {
                item.insert("roleEligibilityScheduleId".into(), schedule);
                from_fixture(
                    "v1.0/microsoft.graph.unifiedRoleEligibilityScheduleInstance",
                    item,
                )
            }
        })
        .collect()
}

fn instances(w: &World, caller: &Caller, groups: bool, expand: bool) -> Vec<Value> {
    let now = Utc::now();
    w.instances
        .iter()
        .filter(|i| i.principal == caller.user.id && is_group(&i.target) == groups && i.end > now)
        .map(|i| {
            let mut item = target_fields(w, &i.target, expand);
            item.insert("id".into(), json!(i.id));
            item.insert("principalId".into(), json!(i.principal));
            item.insert("startDateTime".into(), json!(i.start));
            item.insert("endDateTime".into(), json!(i.end));
            if groups {
                item.insert("assignmentScheduleId".into(), json!(i.schedule));
                from_fixture(
                    "v1.0/microsoft.graph.privilegedAccessGroupAssignmentScheduleInstance",
                    item,
                )
            } else {
                item.insert("roleAssignmentScheduleId".into(), json!(i.schedule));
                item.insert("roleAssignmentOriginId".into(), json!(i.schedule));
                from_fixture(
                    "v1.0/microsoft.graph.unifiedRoleAssignmentScheduleInstance",
                    item,
                )
            }
        })
        .collect()
}

fn request_json(w: &World, r: &Request, q: &HashMap<String, String>) -> Value {
    let expand = q.get("$expand").map(String::as_str).unwrap_or("");
    let mut item = target_fields(
        w,
        &r.target,
        expand
            .split(',')
            .any(|e| e == "roleDefinition" || e == "group"),
    );
    let user = w.users.iter().find(|u| u.id == r.principal);
    item.insert("id".into(), json!(r.id));
    item.insert("action".into(), json!(r.action));
    item.insert("principalId".into(), json!(r.principal));
    item.insert("status".into(), json!(r.status));
    item.insert("justification".into(), json!(r.justification));
    item.insert("createdDateTime".into(), json!(r.created));
    item.insert("completedDateTime".into(), json!(r.completed));
    item.insert("approvalId".into(), json!(r.approval));
    item.insert("targetScheduleId".into(), json!(r.schedule));
    item.insert(
        "createdBy".into(),
        json!({ "application": null, "device": null,
                "user": { "id": r.principal, "displayName": user.map(|u| u.name.clone()) } }),
    );
    item.insert(
        "ticketInfo".into(),
        json!({ "ticketNumber": r.ticket, "ticketSystem": r.ticket_system }),
    );
    item.insert("scheduleInfo".into(), json!({
        "startDateTime": r.start,
        "recurrence": Value::Null,
        "expiration": { "type": if r.duration.is_some() { "afterDuration" } else { "noExpiration" },
                        "endDateTime": Value::Null, "duration": r.duration }
    }));
    if expand.split(',').any(|e| e == "principal") {
        let mut principal = fixture("v1.0/microsoft.graph.user");
        principal.as_object_mut().unwrap().remove("@odata.context");
        principal["@odata.type"] = json!("#microsoft.graph.user");
        principal["id"] = json!(r.principal);
        principal["userPrincipalName"] = json!(user.map(|u| u.upn.clone()));
        principal["mail"] = json!(user.map(|u| u.upn.clone()));
        principal["displayName"] = json!(user.map(|u| u.name.clone()));
        principal["givenName"] = json!(user.map(|u| u.name.clone()));
        item.insert("principal".into(), principal);
    }
    if is_group(&r.target) {
        from_fixture(
            "v1.0/microsoft.graph.privilegedAccessGroupAssignmentScheduleRequest",
            item,
        )
    } else {
        from_fixture(
            "v1.0/microsoft.graph.unifiedRoleAssignmentScheduleRequest",
            item,
        )
    }
}

fn policy_json(w: &World, target: &Target, rules: &Rules) -> Value {
    let (scope, scope_type, role) = match target {
        Target::Directory { role, scope } => (scope.clone(), "DirectoryRole", role.clone()),
        Target::Group { group, access } => (group.clone(), "Group", access.clone()),
    };
    let mut enabled = Vec::new();
    if rules.mfa {
        enabled.push("MultiFactorAuthentication");
    }
    if rules.justification {
        enabled.push("Justification");
    }
    if rules.ticket {
        enabled.push("Ticketing");
    }
    let approvers: Vec<Value> = rules
        .approvers
        .iter()
        .map(|id| {
            let name = w.users.iter().find(|u| u.id == *id).map(|u| u.name.clone());
            json!({ "@odata.type": "#microsoft.graph.singleUser", "userId": id, "description": name })
        })
        .collect();
    let id = format!("Directory_{scope_type}_{role}");
    let mut assignment = from_fixture(
        "v1.0/microsoft.graph.unifiedRoleManagementPolicyAssignment",
        fields(json!({
            "id": id, "policyId": id, "scopeId": scope, "scopeType": scope_type,
            "roleDefinitionId": role,
        })),
    );
    let policy = &mut assignment["policy"];
    policy["id"] = json!(id);
    policy["scopeId"] = json!(scope);
    policy["scopeType"] = json!(scope_type);
    for rule in policy["rules"].as_array_mut().unwrap() {
        match rule["id"].as_str().unwrap_or_default() {
            "Expiration_EndUser_Assignment" => rule["maximumDuration"] = json!(rules.max_duration),
            "Enablement_EndUser_Assignment" => rule["enabledRules"] = json!(enabled),
            "Approval_EndUser_Assignment" => {
                rule["setting"]["isApprovalRequired"] = json!(!rules.approvers.is_empty());
                rule["setting"]["approvalStages"][0]["primaryApprovers"] = json!(approvers);
            }
            "AuthenticationContext_EndUser_Assignment" => {
                rule["isEnabled"] = json!(rules.acrs.is_some());
                rule["claimValue"] = json!(rules.acrs);
            }
            _ => {}
        }
    }
    assignment
}

fn parse_policy_filter(filter: &str) -> Option<(Target, bool)> {
    let mut scope = None;
    let mut scope_type = None;
    let mut role = None;
    for clause in filter.split(" and ") {
        let (name, value) = clause.split_once(" eq ")?;
        let value = value
            .strip_prefix('\'')?
            .strip_suffix('\'')?
            .replace("''", "'");
        match name.trim() {
            "scopeId" => scope = Some(value),
            "scopeType" => scope_type = Some(value),
            "roleDefinitionId" => role = Some(value),
            _ => return None,
        }
    }
    match scope_type?.as_str() {
        "DirectoryRole" => Some((
            Target::Directory {
                role: role?,
                scope: scope?,
            },
            false,
        )),
        "Group" => Some((
            Target::Group {
                group: scope?,
                access: role?,
            },
            true,
        )),
        _ => None,
    }
}

fn approval_json(
    version: &str,
    id: &str,
    approval: &Approval,
    caller: &str,
    w: &World,
    expand: bool,
) -> Value {
    let name = format!("{version}/microsoft.graph.approval");
    let stages = stages_of(version);
    let template = fixture(&name)[stages][0].clone();
    let steps: Vec<Value> = approval
        .steps
        .iter()
        .map(|s| {
            let reviewer = s
                .reviewed_by
                .as_ref()
                .and_then(|id| w.users.iter().find(|u| u.id == *id));
            let mut step = template.clone();
            step["id"] = json!(s.id);
            step["status"] = json!(s.status);
            step["reviewResult"] = json!(s.result);
            step["assignedToMe"] = json!(s.approvers.iter().any(|a| a == caller));
            step["justification"] = json!(s.justification);
            step["reviewedDateTime"] = json!(s.reviewed_at);
            step["reviewedBy"] =
                json!(reviewer.map(|u| json!({ "id": u.id, "displayName": u.name })));
            step
        })
        .collect();
    let mut item = fixture(&name);
    item["id"] = json!(id);
    if expand {
        item[stages] = Value::Array(steps);
    } else {
        item.as_object_mut().unwrap().remove(stages);
    }
    item
}

fn decide(
    w: &mut World,
    caller: &Caller,
    approval_id: &str,
    step_id: &str,
    body: Value,
) -> Result<Response, Response> {
    let object = body
        .as_object()
        .ok_or_else(|| bad("BadRequest", "A body is required."))?;
    for key in object.keys() {
        if !matches!(key.as_str(), "reviewResult" | "justification") {
            return Err(bad("BadRequest", &format!("Invalid property '{key}'.")));
        }
    }
    let result = match object.get("reviewResult").and_then(Value::as_str) {
        Some(r @ ("Approve" | "Deny")) => r.to_string(),
        _ => return Err(bad("BadRequest", "reviewResult must be Approve or Deny.")),
    };
    let justification = object
        .get("justification")
        .and_then(Value::as_str)
        .map(str::to_string);
    let approval = w.approvals.get_mut(approval_id).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The approval was not found.",
        )
    })?;
    let step = approval
        .steps
        .iter_mut()
        .find(|s| s.id == step_id)
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                "The step was not found.",
            )
        })?;
    if !step.approvers.contains(&caller.user.id) {
        return Err(error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "The caller is not an approver of this step.",
        ));
    }
    if step.status == "Completed" {
        return Err(error(
            StatusCode::CONFLICT,
            "Conflict",
            "The approval step has already been completed.",
        ));
    }
    step.status = "Completed".into();
    step.result = result.clone();
    step.reviewed_by = Some(caller.user.id.clone());
    step.justification = justification;
    step.reviewed_at = Some(Utc::now());
    let request_id = approval.request.clone();
    let now = Utc::now();
    if let Some(r) = w.requests.iter_mut().find(|r| r.id == request_id) {
        r.completed = Some(now);
        if result == "Approve" {
            r.status = "Provisioned".into();
            r.start = now;
            w.propagating.push(request_id);
        } else {
            r.status = "Denied".into();
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Creates a schedule request: activation or deactivation, with PIM's checks.
fn create(
    w: &mut World,
    caller: &Caller,
    group: bool,
    body: Value,
    q: &HashMap<String, String>,
) -> Result<Response, Response> {
    let object = body
        .as_object()
        .ok_or_else(|| bad("BadRequest", "A body is required."))?;
    let allowed: &[&str] = if group {
        &[
            "action",
            "principalId",
            "groupId",
            "accessId",
            "justification",
            "scheduleInfo",
            "ticketInfo",
        ]
    } else {
        &[
            "action",
            "principalId",
            "roleDefinitionId",
            "directoryScopeId",
            "justification",
            "scheduleInfo",
            "ticketInfo",
        ]
    };
    for key in object.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(bad("BadRequest", &format!("Invalid property '{key}'.")));
        }
    }
    let text = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_string);
    let action = text("action").ok_or_else(|| bad("BadRequest", "action is required."))?;
    if text("principalId").as_deref() != Some(caller.user.id.as_str()) {
        return Err(error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Self-service actions must name the caller as principalId.",
        ));
    }
    let target = if group {
        let access = text("accessId").ok_or_else(|| bad("BadRequest", "accessId is required."))?;
        if !matches!(access.as_str(), "member" | "owner") {
            return Err(bad("BadRequest", "accessId must be member or owner."));
        }
        Target::Group {
            group: text("groupId").ok_or_else(|| bad("BadRequest", "groupId is required."))?,
            access,
        }
    } else {
        Target::Directory {
            role: text("roleDefinitionId")
                .ok_or_else(|| bad("BadRequest", "roleDefinitionId is required."))?,
            scope: text("directoryScopeId")
                .ok_or_else(|| bad("BadRequest", "directoryScopeId is required."))?,
        }
    };
    let now = Utc::now();
    match action.as_str() {
        "selfActivate" => {}
        "selfDeactivate" => {
            let at = w
                .instances
                .iter()
                .position(|i| i.principal == caller.user.id && i.target == target && i.end > now)
                .ok_or_else(|| {
                    bad(
                        "RoleAssignmentDoesNotExist",
                        "The Role assignment does not exist.",
                    )
                })?;
            if (now - w.instances[at].start).num_seconds() < w.min_active {
                return Err(bad(
                    "ActiveDurationTooShort",
                    "The role assignment was activated less than 5 minutes ago and cannot be deactivated yet.",
                ));
            }
            let status = w.deactivation_status.clone();
            let instance = match &status {
                Some(_) => w.instances[at].clone(),
                None => w.instances.remove(at),
            };
            let id = w.id();
            let request = Request {
                id,
                action,
                principal: caller.user.id.clone(),
                target,
                justification: text("justification"),
                ticket: None,
                ticket_system: None,
                duration: None,
                start: now,
                status: status.unwrap_or_else(|| "Revoked".into()),
                created: now,
                completed: Some(now),
                approval: None,
                schedule: instance.schedule,
            };
            let value = request_json(w, &request, q);
            w.requests.push(request);
            return Ok((StatusCode::CREATED, axum::Json(value)).into_response());
        }
        other => {
            return Err(bad(
                "BadRequest",
                &format!("Self-service callers may not ask for action '{other}'."),
            ));
        }
    }
    if !w
        .eligible
        .iter()
        .any(|(who, t)| *who == caller.user.id && *t == target)
    {
        return Err(bad(
            "RoleAssignmentRequestPolicyValidationFailed",
            "The following policy rules failed: [\"EligibilityRule\"]",
        ));
    }
    let schedule = object
        .get("scheduleInfo")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("BadRequest", "scheduleInfo is required."))?;
    for key in schedule.keys() {
        if !matches!(key.as_str(), "startDateTime" | "expiration" | "recurrence") {
            return Err(bad(
                "BadRequest",
                &format!("Invalid property 'scheduleInfo.{key}'."),
            ));
        }
    }
    let expiration = schedule
        .get("expiration")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("BadRequest", "scheduleInfo.expiration is required."))?;
    if expiration.get("type").and_then(Value::as_str) != Some("afterDuration") {
        return Err(bad(
            "BadRequest",
            "An activation's expiration must be afterDuration.",
        ));
    }
    let duration = expiration
        .get("duration")
        .and_then(Value::as_str)
        .map(str::to_string);
    let secs = duration
        .as_deref()
        .and_then(hoist::backend::entra::policy::iso_duration)
        .ok_or_else(|| {
            bad(
                "BadRequest",
                "expiration.duration must be an ISO 8601 duration.",
            )
        })?;
    let start = schedule
        .get("startDateTime")
        .and_then(Value::as_str)
        .map(|s| {
            s.parse::<DateTime<Utc>>()
                .map_err(|_| bad("BadRequest", "startDateTime is not a date."))
        })
        .transpose()?
        .unwrap_or(now);
    let ticket_text = |key: &str| {
        object
            .get("ticketInfo")
            .and_then(|t| t.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let (ticket, ticket_system) = (ticket_text("ticketNumber"), ticket_text("ticketSystem"));
    let justification = text("justification");
    if w.instances
        .iter()
        .any(|i| i.principal == caller.user.id && i.target == target && i.end > now)
    {
        return Err(bad(
            "RoleAssignmentExists",
            "The Role assignment already exists.",
        ));
    }
    let open = w.requests.iter().any(|r| {
        r.principal == caller.user.id
            && r.target == target
            && r.action == "selfActivate"
            && (r.status == "PendingApproval" || w.propagating.contains(&r.id))
    });
    if open {
        return Err(bad(
            "RoleAssignmentRequestExists",
            "The Role assignment request already exists.",
        ));
    }
    let rules = w.rules.get(&target).cloned().unwrap_or_default();
    let mut failed = Vec::new();
    if rules.mfa && !caller.mfa {
        failed.push("\"MfaRule\"");
    }
    let max = hoist::backend::entra::policy::iso_duration(rules.max_duration).unwrap_or(u64::MAX);
    if secs > max {
        failed.push("\"ExpirationRule\"");
    }
    if rules.justification && justification.as_deref().is_none_or(|j| j.trim().is_empty()) {
        failed.push("\"JustificationRule\"");
    }
    if rules.ticket && ticket.as_deref().is_none_or(|t| t.trim().is_empty()) {
        failed.push("\"TicketingRule\"");
    }
    if !failed.is_empty() {
        return Err(bad(
            "RoleAssignmentRequestPolicyValidationFailed",
            &format!("The following policy rules failed: [{}]", failed.join(",")),
        ));
    }
    if let Some(acrs) = rules.acrs
        && !caller.acrs.iter().any(|a| a == acrs)
    {
        let claims =
            format!(r#"{{"access_token":{{"acrs":{{"essential":true,"value":"{acrs}"}}}}}}"#);
        let encoded: String = url::form_urlencoded::byte_serialize(claims.as_bytes()).collect();
        return Err(bad(
            "RoleAssignmentRequestAcrsValidationFailed",
            &format!(
                "The following policy rules failed: [\"AcrsRule\"]. The authentication context requirement was not met. &claims={encoded}"
            ),
        ));
    }
    let id = w.id();
    let schedule_id = w.id();
    let (status, approval, completed) = if rules.approvers.is_empty() {
        w.propagating.push(id.clone());
        ("Provisioned", None, Some(now))
    } else {
        let approval = w.id();
        let step = w.id();
        w.approvals.insert(
            approval.clone(),
            Approval {
                request: id.clone(),
                steps: vec![Step {
                    id: step,
                    approvers: rules.approvers.clone(),
                    status: "InProgress".into(),
                    result: "NotReviewed".into(),
                    reviewed_by: None,
                    justification: None,
                    reviewed_at: None,
                }],
            },
        );
        ("PendingApproval", Some(approval), None)
    };
    let request = Request {
        id,
        action,
        principal: caller.user.id.clone(),
        target,
        justification,
        ticket,
        ticket_system,
        duration,
        start,
        status: status.into(),
        created: now,
        completed,
        approval,
        schedule: schedule_id,
    };
    let value = request_json(w, &request, q);
    w.requests.push(request);
    Ok((StatusCode::CREATED, axum::Json(value)).into_response())
}
