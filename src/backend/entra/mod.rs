//! Microsoft Entra Privileged Identity Management as a [`Backend`], over
//! Microsoft Graph v1.0 (beta only to decide approvals of directory role
//! activations, which v1.0 cannot do). Entra directory roles and PIM for
//! Groups (membership and ownership) both appear as roles.
//!
//! - [`graph`]: HTTP to Graph; [`model`]: Graph's objects as hoist reads them;
//! - [`ids`]: hoist's ids for Entra objects; [`mapping`]: Entra's objects as
//!   hoist's types and states; [`policy`]: a role's terms from its PIM policy;
//! - [`approvals`]: the approver's queue and decisions; [`errors`]: Graph's
//!   failures in hoist's words; [`live`]: changes, by asking Graph again.
//!
//! Entra has no claims, break-glass acknowledgements, incidents,
//! credentials, request history or audit log in hoist's sense: its
//! [`Capabilities`] leave them out, so the TUI hides them.
//!
//! Long because it is the whole [`Backend`] for Entra, one method per
//! operation of the trait; what each needs of Graph is in the submodules.

mod approvals;
mod errors;
pub mod graph;
pub mod ids;
mod live;
pub mod mapping;
pub mod model;
pub mod policy;
pub mod record;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use hoist_api::{AccessRequest, CreateRequest, Decision, Grant, GrantState, Me, Role};

use self::errors::Known;
use self::graph::{Graph, GraphError, Recorder, Version, odata_literal, query_value};
use self::ids::{ObjectRef, RoleRef, Surface};
use self::model::{
    AssignmentInstance, EligibilityInstance, Expiration, NewScheduleRequest, PolicyAssignment,
    Schedule, ScheduleRequest, TicketInfo, User,
};
use self::policy::{Terms, to_iso_duration};
use super::{Backend, BackendError, Capabilities, EventStream, ServerClock};
use crate::config::EntraTenant;

/// What Entra PIM offers through hoist.
pub const CAPABILITIES: Capabilities = Capabilities {
    review: true,
    claim: false,
    acknowledge: false,
    cancel: true,
    revoke: true,
    extend: false,
    credential: false,
    history: false,
    incidents: false,
    audit: false,
    workload_grants: false,
    readable_role_ids: false,
    approver_roles: false,
};

/// How long a role's policy terms are trusted before they are read again.
const TERMS_FOR: Duration = Duration::from_secs(300);
/// Policies read at once while listing roles: Graph throttles bursts.
const POLICY_READS: usize = 4;

/// Signs in again asking for `claims` (an authentication context), and
/// answers the new access token. Supplied by whoever can talk to the
/// person: the command line prints the device code, the TUI shows it.
pub type StepUp = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<String, StepUpError>> + Send>>
        + Send
        + Sync,
>;

/// Why a stronger sign-in did not happen.
#[derive(Debug)]
pub enum StepUpError {
    /// The identity provider (or Graph, asked who signed in) did not
    /// answer: worth trying again, like a broker that is away.
    Unreachable(String),
    /// The sign-in failed or was refused.
    Failed(String),
}

/// Graph's paths for each surface.
fn base(surface: Surface) -> &'static str {
    match surface {
        Surface::Directory => "/roleManagement/directory",
        Surface::Group => "/identityGovernance/privilegedAccess/group",
    }
}

fn requests_path(surface: Surface) -> String {
    match surface {
        Surface::Directory => format!("{}/roleAssignmentScheduleRequests", base(surface)),
        Surface::Group => format!("{}/assignmentScheduleRequests", base(surface)),
    }
}

fn expand(surface: Surface) -> &'static str {
    match surface {
        Surface::Directory => "roleDefinition",
        Surface::Group => "group",
    }
}

#[derive(Clone)]
pub struct EntraClient {
    graph: Graph,
    broker: String,
    poll: Duration,
    me: Arc<tokio::sync::OnceCell<User>>,
    terms: Arc<Mutex<HashMap<RoleRef, (Instant, Terms)>>>,
    step_up: Option<StepUp>,
    ticket_system: Option<String>,
    /// Grants whose deactivation was sent but not answered: a retry that
    /// finds one no longer active confirms it (Graph refuses a second).
    deactivations_sent: Arc<Mutex<HashMap<String, Grant>>>,
    /// The last picture read, shared by the calls that wait for it.
    last_picture: Arc<tokio::sync::Mutex<Option<Taken>>>,
}

/// A picture as read: when its reading ended, and how many of Graph's
/// writes had ended when it began.
struct Taken {
    ended: Instant,
    writes: u64,
    picture: Arc<Picture>,
}

impl std::fmt::Debug for EntraClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraClient")
            .field("graph", &self.graph)
            .field("tenant", &self.broker)
            .finish()
    }
}

/// Everything about me at once: what the lists are made from.
struct Picture {
    requests: Vec<(Surface, ScheduleRequest)>,
    grants: Vec<Grant>,
}

impl EntraClient {
    pub fn new(tenant: &EntraTenant, token: &str) -> Result<EntraClient, BackendError> {
        let graph = Graph::new(&tenant.graph, token).map_err(|refused| BackendError::BadUrl {
            url: refused.url,
            reason: refused.reason,
        })?;
        Ok(EntraClient {
            graph,
            broker: tenant.broker(),
            poll: tenant.poll,
            me: Arc::new(tokio::sync::OnceCell::new()),
            terms: Arc::new(Mutex::new(HashMap::new())),
            step_up: None,
            ticket_system: tenant.ticket_system.clone(),
            deactivations_sent: Arc::default(),
            last_picture: Arc::default(),
        })
    }

    /// Signs in again when a role's authentication context asks for it.
    pub fn with_step_up(mut self, step_up: StepUp) -> EntraClient {
        self.step_up = Some(step_up);
        self
    }

    /// Hands every Graph exchange to `recorder` (`hoist debug record`).
    pub fn with_recorder(mut self, recorder: Recorder) -> EntraClient {
        self.graph.record_with(recorder);
        self
    }

    fn failed(&self, doing: &str) -> impl Fn(GraphError) -> BackendError + '_ {
        let doing = doing.to_string();
        move |err| errors::to_backend(err, self.graph.root(), &doing)
    }

    async fn user(&self) -> Result<&User, BackendError> {
        self.me
            .get_or_try_init(|| async {
                self.graph
                    .get::<User>(Version::V1, "/me?$select=id,userPrincipalName,displayName")
                    .await
                    .map_err(self.failed("reading who you are"))
            })
            .await
    }

    fn user_name(user: &User) -> String {
        user.user_principal_name
            .clone()
            .unwrap_or_else(|| user.id.clone())
    }

    async fn mine<T: serde::de::DeserializeOwned>(
        &self,
        surface: Surface,
        collection: &str,
        on: &str,
        query: &str,
    ) -> Result<Vec<T>, BackendError> {
        let path = format!(
            "{}/{collection}/filterByCurrentUser(on='{on}')?{query}",
            base(surface)
        );
        self.graph
            .get_all(Version::V1, &path)
            .await
            .map_err(self.failed(&format!("listing {collection}")))
    }

    async fn eligibilities(&self) -> Result<Vec<(Surface, EligibilityInstance)>, BackendError> {
        let (directory, groups) = futures::try_join!(
            self.mine::<EligibilityInstance>(
                Surface::Directory,
                "roleEligibilityScheduleInstances",
                "principal",
                "$expand=roleDefinition",
            ),
            self.mine::<EligibilityInstance>(
                Surface::Group,
                "eligibilityScheduleInstances",
                "principal",
                "$expand=group",
            ),
        )?;
        Ok(tag(Surface::Directory, directory)
            .chain(tag(Surface::Group, groups))
            .collect())
    }

    async fn instances(&self) -> Result<Vec<(Surface, AssignmentInstance)>, BackendError> {
        let (directory, groups) = futures::try_join!(
            self.mine::<AssignmentInstance>(
                Surface::Directory,
                "roleAssignmentScheduleInstances",
                "principal",
                "$expand=roleDefinition",
            ),
            self.mine::<AssignmentInstance>(
                Surface::Group,
                "assignmentScheduleInstances",
                "principal",
                "$expand=group",
            ),
        )?;
        Ok(tag(Surface::Directory, directory)
            .chain(tag(Surface::Group, groups))
            .collect())
    }

    async fn my_requests(&self) -> Result<Vec<(Surface, ScheduleRequest)>, BackendError> {
        let (directory, groups) = futures::try_join!(
            self.mine::<ScheduleRequest>(
                Surface::Directory,
                "roleAssignmentScheduleRequests",
                "principal",
                "$expand=roleDefinition",
            ),
            self.mine::<ScheduleRequest>(
                Surface::Group,
                "assignmentScheduleRequests",
                "principal",
                "$expand=group",
            ),
        )?;
        Ok(tag(Surface::Directory, directory)
            .chain(tag(Surface::Group, groups))
            .collect())
    }

    /// Everything about me, read once for the calls made together (a
    /// screen's load lists requests and grants at once, both from it; Graph
    /// throttles per caller): a call takes a picture whose reading ended
    /// after it asked, unless one of this client's writes ended since that
    /// reading began; otherwise it reads its own.
    async fn picture(&self) -> Result<Arc<Picture>, BackendError> {
        let asked = Instant::now();
        let mut last = self.last_picture.lock().await;
        if let Some(taken) = last.as_ref()
            && taken.ended >= asked
            && taken.writes == self.graph.writes()
        {
            return Ok(Arc::clone(&taken.picture));
        }
        let writes = self.graph.writes();
        let picture = Arc::new(self.read_picture().await?);
        *last = Some(Taken {
            ended: Instant::now(),
            writes,
            picture: Arc::clone(&picture),
        });
        Ok(picture)
    }

    async fn read_picture(&self) -> Result<Picture, BackendError> {
        let (user, requests, instances) =
            futures::try_join!(self.user(), self.my_requests(), self.instances())?;
        let holder = Self::user_name(user);
        let grants = instances
            .iter()
            .filter_map(|(surface, instance)| {
                let same: Vec<ScheduleRequest> = requests
                    .iter()
                    .filter(|(s, _)| s == surface)
                    .map(|(_, r)| r.clone())
                    .collect();
                mapping::grant(*surface, instance, &holder, &same)
            })
            .collect();
        Ok(Picture { requests, grants })
    }

    /// My access requests from a picture, newest first.
    fn access_requests(&self, picture: &Picture, requester: &str) -> Vec<AccessRequest> {
        self.map_requests(&picture.requests, picture, requester, true)
    }

    /// `requests` as access requests, their states told from `picture`.
    fn map_requests(
        &self,
        requests: &[(Surface, ScheduleRequest)],
        picture: &Picture,
        requester: &str,
        mine: bool,
    ) -> Vec<AccessRequest> {
        let now = self.graph.clock().now();
        let deactivated: Vec<(String, DateTime<Utc>)> = picture
            .requests
            .iter()
            .filter(|(_, r)| r.is("selfDeactivate"))
            .filter_map(|(surface, r)| {
                Some((
                    mapping::request_ref(*surface, r)?.to_string(),
                    r.created_date_time?,
                ))
            })
            .collect();
        let mut requests: Vec<AccessRequest> = requests
            .iter()
            .filter_map(|(surface, r)| {
                let terms =
                    mapping::request_ref(*surface, r).and_then(|role| self.cached_terms(&role));
                mapping::request(
                    *surface,
                    r,
                    &mapping::Context {
                        now,
                        requester,
                        grants: &picture.grants,
                        deactivated: &deactivated,
                        terms: terms.as_ref(),
                        mine,
                    },
                )
            })
            .collect();
        requests.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        requests
    }

    fn cached_terms(&self, role: &RoleRef) -> Option<Terms> {
        let cache = self.terms.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(role).map(|(_, terms)| terms.clone())
    }

    /// The role's terms, from its PIM policy (cached for a few minutes).
    async fn terms(&self, role: &RoleRef) -> Result<Terms, BackendError> {
        {
            let cache = self.terms.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, terms)) = cache.get(role)
                && at.elapsed() < TERMS_FOR
            {
                return Ok(terms.clone());
            }
        }
        let filter = match role {
            // A directory role has one policy, the tenant's, whatever scope
            // (an administrative unit, an application) it is held at.
            RoleRef::Directory {
                role_definition, ..
            } => format!(
                "scopeId eq '/' and scopeType eq 'DirectoryRole' and roleDefinitionId eq {}",
                odata_literal(role_definition)
            ),
            RoleRef::Group { group, access } => format!(
                "scopeId eq {} and scopeType eq 'Group' and roleDefinitionId eq {}",
                odata_literal(group),
                odata_literal(access.as_str())
            ),
        };
        let path = format!(
            "/policies/roleManagementPolicyAssignments?$filter={}&$expand=policy($expand=rules)",
            query_value(&filter)
        );
        let assignments: Vec<PolicyAssignment> = self
            .graph
            .get_all(Version::V1, &path)
            .await
            .map_err(self.failed("reading the role's policy"))?;
        let terms = policy::terms(&assignments);
        self.terms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(role.clone(), (Instant::now(), terms.clone()));
        Ok(terms)
    }

    /// The role a request names: one of our ids, or the name of a role I
    /// am eligible for (what people type at the command line).
    async fn resolve_role(&self, asked: &str) -> Result<RoleRef, BackendError> {
        if let Some(role) = RoleRef::parse(asked) {
            return Ok(role);
        }
        let roles = self.roles().await?;
        let wanted = asked.trim().to_lowercase();
        let found: Vec<&Role> = roles
            .iter()
            .filter(|r| r.name.to_lowercase() == wanted)
            .collect();
        match found.as_slice() {
            [one] => RoleRef::parse(&one.id)
                .ok_or_else(|| BackendError::Protocol(format!("bad role id {}", one.id))),
            [] => Err(BackendError::Refused {
                status: 404,
                code: hoist_api::ErrorCode::UnknownRole,
                message: format!(
                    "no eligible role `{asked}`: give a role id from `hoist roles` or its exact name"
                ),
            }),
            _ => Err(BackendError::Refused {
                status: 400,
                code: hoist_api::ErrorCode::UnknownRole,
                message: format!("several eligible roles are called `{asked}`: give its id"),
            }),
        }
    }

    fn activation(
        &self,
        role: &RoleRef,
        principal: &str,
        action: &'static str,
    ) -> NewScheduleRequest {
        let mut body = NewScheduleRequest {
            action,
            principal_id: principal.to_string(),
            role_definition_id: None,
            directory_scope_id: None,
            group_id: None,
            access_id: None,
            justification: None,
            schedule_info: None,
            ticket_info: None,
        };
        match role {
            RoleRef::Directory {
                role_definition,
                scope,
            } => {
                body.role_definition_id = Some(role_definition.clone());
                body.directory_scope_id = Some(scope.clone());
            }
            RoleRef::Group { group, access } => {
                body.group_id = Some(group.clone());
                body.access_id = Some(access.as_str());
            }
        }
        body
    }

    /// Posts a schedule request, signing in again once if the role's
    /// authentication context asks for a stronger sign-in.
    async fn post_request(
        &self,
        surface: Surface,
        body: &NewScheduleRequest,
    ) -> Result<ScheduleRequest, GraphError> {
        let path = requests_path(surface);
        match self.graph.post(Version::V1, &path, body).await {
            Err(err) => match (errors::known(&err), &self.step_up) {
                (Known::ClaimsChallenge(claims), Some(step_up)) => {
                    // Refused for this call, not a session gone: the one
                    // signed in still works for everything else.
                    // Graph refused this POST (nothing was filed): a
                    // sign-in that could not be made is that refusal, to
                    // try again later, not an answer lost on the way.
                    let token = step_up(claims).await.map_err(|err| match err {
                        StepUpError::Unreachable(reason) => GraphError::Status {
                            status: 403,
                            code: "StepUpUnreachable".into(),
                            message: format!(
                                "signing in again for the role could not be done now ({reason}); \
                                 nothing was filed: try again shortly"
                            ),
                        },
                        StepUpError::Failed(reason) => GraphError::Status {
                            status: 403,
                            code: "StepUpFailed".into(),
                            message: format!("signing in again for the role failed: {reason}"),
                        },
                    })?;
                    self.graph.set_token(&token);
                    self.graph.post(Version::V1, &path, body).await
                }
                _ => Err(err),
            },
            ok => ok,
        }
    }

    fn request_from(
        &self,
        surface: Surface,
        r: &ScheduleRequest,
        picture: &Picture,
        requester: &str,
        mine: bool,
    ) -> Result<AccessRequest, BackendError> {
        self.map_requests(&[(surface, r.clone())], picture, requester, mine)
            .into_iter()
            .next()
            .ok_or_else(|| BackendError::Protocol(format!("request {} is not an activation", r.id)))
    }

    /// After `RoleAssignmentExists` or `RoleAssignmentRequestExists`: what I
    /// asked for is already active or already requested, and saying so is
    /// the truth, not a failure.
    async fn already(&self, role: &RoleRef, known: &Known) -> Result<AccessRequest, BackendError> {
        let user = Self::user_name(self.user().await?);
        let picture = self.picture().await?;
        let role_id = role.to_string();
        let requests = self.access_requests(&picture, &user);
        // Active, or activated and still propagating (Graph may call that
        // active already, before it lists the assignment); for a request
        // that exists, one waiting or propagating.
        use hoist_api::RequestState::{Active, Approved, Pending};
        let states = match known {
            Known::AssignmentExists => [Active, Approved],
            _ => [Pending, Approved],
        };
        let found = states.iter().find_map(|state| {
            requests
                .iter()
                .find(|r| r.role == role_id && r.state == *state)
        });
        if let Some(found) = found {
            return Ok(found.clone());
        }
        // Active through something hoist did not file: the grant speaks for it.
        let grant = picture
            .grants
            .iter()
            .find(|g| g.role == role_id)
            .ok_or_else(|| BackendError::Refused {
                status: 400,
                code: hoist_api::ErrorCode::InvalidState,
                message: "Entra says the role is already active or requested, but shows \
                          neither; look in the Entra portal"
                    .into(),
            })?;
        Ok(AccessRequest {
            id: grant.id.clone(),
            kind: hoist_api::RequestKind::Access,
            role: grant.role.clone(),
            role_name: grant.role_name.clone(),
            requester: user,
            justification: grant.justification.clone(),
            ticket: grant.ticket.clone(),
            incident: None,
            duration_secs: (grant.expires_at - grant.starts_at).num_seconds().max(0) as u64,
            starts_at: None,
            break_glass: false,
            state: hoist_api::RequestState::Active,
            created_at: grant.starts_at,
            updated_at: grant.starts_at,
            lapses_at: None,
            approvals_required: 0,
            reviews: Vec::new(),
            claim: None,
            grant_id: Some(grant.id.clone()),
            reason: None,
            acknowledgement: None,
            tier: None,
            approvers: Vec::new(),
            signed_in_at: None,
        })
    }
}

fn tag<T>(surface: Surface, items: Vec<T>) -> impl Iterator<Item = (Surface, T)> {
    items.into_iter().map(move |item| (surface, item))
}

fn bad_id(what: &str, id: &str) -> BackendError {
    BackendError::Refused {
        status: 404,
        code: hoist_api::ErrorCode::NotFound,
        message: format!("`{id}` is not an Entra {what} id (they look like dir:… or grp:…)"),
    }
}

#[async_trait::async_trait]
impl Backend for EntraClient {
    fn broker(&self) -> &str {
        &self.broker
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn clock(&self) -> Arc<ServerClock> {
        self.graph.clock()
    }

    fn set_token(&self, token: &str) {
        self.graph.set_token(token);
    }

    async fn me(&self) -> Result<Me, BackendError> {
        let user = self.user().await?;
        Ok(Me {
            user: Self::user_name(user),
            display_name: user.display_name.clone().unwrap_or_default(),
            groups: Vec::new(),
            approver_for: Vec::new(),
            auditor: false,
        })
    }

    async fn roles(&self) -> Result<Vec<Role>, BackendError> {
        let eligible = self.eligibilities().await?;
        let mut seen = std::collections::HashSet::new();
        let refs: Vec<(RoleRef, EligibilityInstance)> = eligible
            .into_iter()
            .filter_map(|(surface, e)| Some((mapping::eligibility_ref(surface, &e)?, e)))
            .filter(|(role, _)| seen.insert(role.clone()))
            .collect();
        let reads: Vec<_> = refs.iter().map(|(role, _)| self.terms(role)).collect();
        let terms: Vec<Result<Terms, BackendError>> = futures::stream::iter(reads)
            .buffered(POLICY_READS)
            .collect()
            .await;
        let mut roles = Vec::with_capacity(refs.len());
        for ((role, e), terms) in refs.iter().zip(terms) {
            roles.push(mapping::role(role, e, &readable(terms)?));
        }
        roles.sort_by_key(|r| r.name.to_lowercase());
        Ok(roles)
    }

    async fn requests(&self, limit: usize) -> Result<Vec<AccessRequest>, BackendError> {
        let user = Self::user_name(self.user().await?);
        let picture = self.picture().await?;
        let mut requests = self.access_requests(&picture, &user);
        requests.truncate(limit);
        Ok(requests)
    }

    async fn request(&self, id: &str) -> Result<AccessRequest, BackendError> {
        let object = ObjectRef::parse(id).ok_or_else(|| bad_id("request", id))?;
        // The principal too: an approver reading another's request names
        // its requester as the review queue does.
        let path = format!(
            "{}/{}?$expand={},principal",
            requests_path(object.surface),
            object.id,
            expand(object.surface)
        );
        let (user, r, picture) = futures::try_join!(
            self.user(),
            async {
                self.graph
                    .get::<ScheduleRequest>(Version::V1, &path)
                    .await
                    .map_err(self.failed(&format!("reading request {id}")))
            },
            self.picture(),
        )?;
        let mine = r.principal_id.as_deref() == Some(user.id.as_str());
        let requester = if mine {
            Self::user_name(user)
        } else {
            mapping::requester_of(&r)
        };
        self.request_from(object.surface, &r, &picture, &requester, mine)
    }

    async fn grants(&self, _include_ended: bool) -> Result<Vec<Grant>, BackendError> {
        // Entra keeps no ended instances: only what is active now is known.
        let mut grants = self.picture().await?.grants.clone();
        grants.sort_by_key(|g| g.expires_at);
        Ok(grants)
    }

    async fn file(
        &self,
        body: &CreateRequest,
        _idempotency_key: &str,
    ) -> Result<AccessRequest, BackendError> {
        // Graph has no idempotency key; a retry that finds the first attempt
        // already filed is told so by RoleAssignmentRequestExists, below.
        if body.break_glass {
            return Err(BackendError::Unsupported("break-glass"));
        }
        if body.starts_at.is_some() {
            return Err(BackendError::Unsupported("scheduled starts"));
        }
        if body.incident.is_some() {
            return Err(BackendError::Unsupported("incident references"));
        }
        let role = self.resolve_role(&body.role).await?;
        let user = self.user().await?;
        let mut new = self.activation(&role, &user.id, "selfActivate");
        new.justification = Some(body.justification.clone());
        // The policy is read only for a duration not asked for.
        let secs = match body.duration_secs {
            Some(secs) => secs,
            None => readable(self.terms(&role).await)?.default_duration_secs(),
        };
        new.schedule_info = Some(Schedule {
            start_date_time: Some(self.graph.clock().now()),
            expiration: Some(Expiration {
                kind: Some("afterDuration".into()),
                duration: Some(to_iso_duration(secs)),
                end_date_time: None,
            }),
        });
        // PIM's ticketing rule asks for ticket information: the number, and
        // the system it is from, which the profile names.
        new.ticket_info = body.ticket.as_ref().map(|ticket| TicketInfo {
            ticket_number: Some(ticket.clone()),
            ticket_system: self.ticket_system.clone(),
        });
        let surface = role.surface();
        match self.post_request(surface, &new).await {
            // Read back with its role expanded: the answer to a POST names
            // the role only by id.
            Ok(created) => {
                let id = ObjectRef::new(surface, &created.id).to_string();
                match self.request(&id).await {
                    // The activation was made: a read that fails (Graph's
                    // replicas lag, throttling, a 503) must not report it
                    // as failed, or the person takes a live activation for
                    // none and a retry is refused as a second one. The
                    // POST's answer says what was filed, its role by id.
                    Err(err) => {
                        tracing::debug!(error = %err, "the activation was filed; reading it back failed");
                        let nothing_yet = Picture {
                            requests: Vec::new(),
                            grants: Vec::new(),
                        };
                        self.request_from(
                            surface,
                            &created,
                            &nothing_yet,
                            &Self::user_name(user),
                            true,
                        )
                    }
                    read => read,
                }
            }
            Err(err) => match errors::known(&err) {
                known @ (Known::AssignmentExists | Known::RequestExists) => {
                    self.already(&role, &known).await
                }
                _ => Err(errors::to_backend(
                    err,
                    self.graph.root(),
                    "activating the role",
                )),
            },
        }
    }

    async fn cancel(
        &self,
        id: &str,
        _reason: Option<String>,
    ) -> Result<AccessRequest, BackendError> {
        let object = ObjectRef::parse(id).ok_or_else(|| bad_id("request", id))?;
        let cancelled = self
            .graph
            .post_action(
                Version::V1,
                &format!("{}/{}/cancel", requests_path(object.surface), object.id),
            )
            .await;
        if let Err(err) = cancelled {
            // Activated already, Entra applying it: no request to cancel
            // any more, and its grant, the thing to deactivate, not listed
            // yet. Said so, rather than Graph's bare refusal.
            if let Ok(current) = self.request(id).await
                && current.state == hoist_api::RequestState::Approved
            {
                return Err(BackendError::Refused {
                    status: 409,
                    code: hoist_api::ErrorCode::InvalidState,
                    message: format!(
                        "{id} is activated already and Entra is applying it, so it cannot be \
                         cancelled; its grant appears within minutes: deactivate that (x on \
                         Grants, or `hoist revoke`)"
                    ),
                });
            }
            return Err(self.failed(&format!("cancelling {id}"))(err));
        }
        self.request(id).await
    }

    async fn revoke(&self, grant_id: &str, reason: Option<String>) -> Result<Grant, BackendError> {
        let object = ObjectRef::parse(grant_id).ok_or_else(|| bad_id("grant", grant_id))?;
        let user = self.user().await?;
        let active = self
            .picture()
            .await?
            .grants
            .iter()
            .find(|g| g.id == grant_id)
            .cloned();
        let sent = || {
            self.deactivations_sent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        };
        let Some(grant) = active else {
            // Its deactivation was sent and its answer lost: it took, unless
            // the grant reached its end first.
            return match sent().remove(grant_id) {
                Some(ended) if self.graph.clock().now() >= ended.expires_at => Ok(Grant {
                    state: GrantState::Expired,
                    ended_at: Some(ended.expires_at),
                    revoked_by: None,
                    revoke_reason: None,
                    ..ended
                }),
                Some(ended) => Ok(ended),
                None => Err(BackendError::Refused {
                    status: 404,
                    code: hoist_api::ErrorCode::NotFound,
                    message: format!(
                        "{grant_id} is not active in Entra (it ended, or was deactivated \
                         elsewhere): nothing to revoke"
                    ),
                }),
            };
        };
        let role = RoleRef::parse(&grant.role)
            .ok_or_else(|| BackendError::Protocol(format!("bad role id {}", grant.role)))?;
        let mut body = self.activation(&role, &user.id, "selfDeactivate");
        body.justification = reason.clone();
        let ended = Grant {
            state: GrantState::Revoked,
            ended_at: Some(self.graph.clock().now()),
            revoked_by: Some(Self::user_name(user)),
            revoke_reason: reason,
            ..grant
        };
        // A deactivation sent before, its answer lost, while Graph still
        // lists the grant (its list lags): Graph's "not active" to this one
        // is the first one's doing, and "already requested" means it is
        // under way.
        let resent = sent().insert(grant_id.to_string(), ended.clone()).is_some();
        let posted = match self.post_request(object.surface, &body).await {
            Err(err) if resent => match errors::known(&err) {
                Known::AssignmentMissing => return Ok(sent().remove(grant_id).unwrap_or(ended)),
                Known::RequestExists => Err(BackendError::Refused {
                    status: 503,
                    code: hoist_api::ErrorCode::Internal,
                    message: format!("Entra has not finished deactivating {}", ended.role_name),
                }),
                _ => Err(self.failed(&format!("deactivating {}", ended.role_name))(
                    err,
                )),
            },
            posted => posted.map_err(self.failed(&format!("deactivating {}", ended.role_name))),
        };
        // Done only when Graph says so: a deactivation it could not carry
        // out leaves the role active, and one it has not finished is not
        // done yet (asked again, the grant's absence confirms it).
        let outcome = posted.and_then(|created| match created.status.as_str() {
            "Revoked" => Ok(ended.clone()),
            status if mapping::FAILED_STATUSES.contains(&status) => Err(BackendError::Refused {
                status: 409,
                code: hoist_api::ErrorCode::InvalidState,
                message: format!(
                    "Entra answered {} to deactivating {}: it is still active",
                    crate::text::sanitize::line(status),
                    ended.role_name
                ),
            }),
            status => Err(BackendError::Refused {
                status: 503,
                code: hoist_api::ErrorCode::Internal,
                message: format!(
                    "Entra has not finished deactivating {} ({})",
                    ended.role_name,
                    crate::text::sanitize::line(status)
                ),
            }),
        });
        // Kept only while the outcome is unknown.
        if !outcome.as_ref().is_err_and(BackendError::is_transient) {
            sent().remove(grant_id);
        }
        outcome
    }

    async fn review_queue(&self) -> Result<Vec<AccessRequest>, BackendError> {
        approvals::queue(self).await
    }

    async fn review(
        &self,
        id: &str,
        decision: Decision,
        comment: Option<String>,
    ) -> Result<AccessRequest, BackendError> {
        approvals::decide(self, id, decision, comment).await
    }

    async fn events(&self) -> Result<EventStream, BackendError> {
        live::follow(self.clone(), self.poll).await
    }
}

/// A role's terms, or Entra's defaults marked unread when Graph refused to
/// say (a 403 for want of a directory reader's role, a 404, throttling):
/// the role still shows, and Entra checks its rules at activation. A lost
/// session or broker is still an error.
fn readable(terms: Result<Terms, BackendError>) -> Result<Terms, BackendError> {
    match terms {
        Err(BackendError::Refused { .. }) => Ok(Terms {
            unread: true,
            max_duration_secs: policy::PIM_MAX_SECS,
            ..Terms::default()
        }),
        other => other,
    }
}
