//! Microsoft Graph's objects as hoist reads and writes them: only the
//! properties it uses, named as Graph names them (v1.0, and beta for
//! directory role approvals). Unknown properties are ignored, as Graph adds
//! them freely; what hoist sends carries only what the documentation lists.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A page of a collection; `@odata.nextLink` names the next one.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    pub next_link: Option<String>,
}

/// `GET /me`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub user_principal_name: Option<String>,
    pub display_name: Option<String>,
}

/// A directory object expanded as a request's `principal`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    pub id: Option<String>,
    pub user_principal_name: Option<String>,
    pub display_name: Option<String>,
}

/// `roleDefinition`, expanded.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleDefinition {
    pub id: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
}

/// `group`, expanded.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
}

/// `unifiedRoleEligibilityScheduleInstance` and
/// `privilegedAccessGroupEligibilityScheduleInstance`: what I may activate.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EligibilityInstance {
    pub id: String,
    pub principal_id: Option<String>,
    // Directory roles.
    pub role_definition_id: Option<String>,
    pub directory_scope_id: Option<String>,
    #[serde(default)]
    pub role_definition: Option<RoleDefinition>,
    // Groups.
    pub group_id: Option<String>,
    pub access_id: Option<String>,
    #[serde(default)]
    pub group: Option<Group>,
    pub start_date_time: Option<DateTime<Utc>>,
    pub end_date_time: Option<DateTime<Utc>>,
}

/// `unifiedRoleAssignmentScheduleInstance` and
/// `privilegedAccessGroupAssignmentScheduleInstance`: access I hold now.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentInstance {
    pub id: String,
    pub principal_id: Option<String>,
    pub role_definition_id: Option<String>,
    pub directory_scope_id: Option<String>,
    #[serde(default)]
    pub role_definition: Option<RoleDefinition>,
    pub group_id: Option<String>,
    pub access_id: Option<String>,
    #[serde(default)]
    pub group: Option<Group>,
    pub start_date_time: Option<DateTime<Utc>>,
    pub end_date_time: Option<DateTime<Utc>>,
    /// `Activated` (just in time) or `Assigned` (standing); the groups API
    /// spells them in lower case.
    pub assignment_type: Option<String>,
    /// Directory roles: the schedule the activation request created.
    pub role_assignment_schedule_id: Option<String>,
    /// Groups: likewise.
    pub assignment_schedule_id: Option<String>,
}

/// `ticketInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_system: Option<String>,
}

/// `expirationPattern`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Expiration {
    /// `afterDuration`, `afterDateTime`, `noExpiration`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// ISO 8601, e.g. `PT1H`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date_time: Option<DateTime<Utc>>,
}

/// `requestSchedule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<Expiration>,
}

/// `identitySet`, as `createdBy`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IdentitySet {
    pub user: Option<Identity>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub id: Option<String>,
    pub display_name: Option<String>,
}

/// `unifiedRoleAssignmentScheduleRequest` and
/// `privilegedAccessGroupAssignmentScheduleRequest`, as Graph answers them.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleRequest {
    pub id: String,
    /// `selfActivate`, `selfDeactivate`, `selfExtend`, `adminAssign`, ...
    pub action: Option<String>,
    pub principal_id: Option<String>,
    pub role_definition_id: Option<String>,
    pub directory_scope_id: Option<String>,
    #[serde(default)]
    pub role_definition: Option<RoleDefinition>,
    pub group_id: Option<String>,
    pub access_id: Option<String>,
    #[serde(default)]
    pub group: Option<Group>,
    #[serde(default)]
    pub principal: Option<Principal>,
    pub justification: Option<String>,
    #[serde(default)]
    pub ticket_info: Option<TicketInfo>,
    #[serde(default)]
    pub schedule_info: Option<Schedule>,
    /// `PendingApproval`, `Granted`, `Provisioned`, `Denied`, `Canceled`, ...
    pub status: String,
    pub created_date_time: Option<DateTime<Utc>>,
    pub completed_date_time: Option<DateTime<Utc>>,
    pub approval_id: Option<String>,
    pub target_schedule_id: Option<String>,
    #[serde(default)]
    pub created_by: Option<IdentitySet>,
}

impl ScheduleRequest {
    /// Whether its action is `action`: Graph's answers spell them in more
    /// than one case (`selfActivate`, `SelfActivate`).
    pub fn is(&self, action: &str) -> bool {
        self.action
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case(action))
    }
}

/// What hoist posts to create a schedule request: activation or
/// deactivation of a directory role or a group membership or ownership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewScheduleRequest {
    pub action: &'static str,
    pub principal_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_definition_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory_scope_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_id: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_info: Option<Schedule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_info: Option<TicketInfo>,
}

/// `unifiedRoleManagementPolicyAssignment`, with its policy and rules expanded.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAssignment {
    pub policy_id: Option<String>,
    #[serde(default)]
    pub policy: Option<Policy>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Policy {
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
}

/// One `unifiedRoleManagementPolicyRule`; its kind is its `@odata.type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    pub id: String,
    #[serde(rename = "@odata.type")]
    pub odata_type: String,
    /// Expiration rules.
    pub is_expiration_required: Option<bool>,
    pub maximum_duration: Option<String>,
    /// Enablement rules: `MultiFactorAuthentication`, `Justification`, `Ticketing`.
    #[serde(default)]
    pub enabled_rules: Vec<String>,
    /// Approval rules.
    pub setting: Option<ApprovalSettings>,
    /// Authentication context rules.
    pub is_enabled: Option<bool>,
    pub claim_value: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalSettings {
    #[serde(default)]
    pub is_approval_required: bool,
    #[serde(default)]
    pub approval_stages: Vec<ApprovalStage>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalStage {
    pub approval_stage_time_out_in_days: Option<u32>,
    #[serde(default)]
    pub primary_approvers: Vec<SubjectSet>,
}

/// `singleUser`, `groupMembers`, `requestorManager`, ...
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectSet {
    #[serde(rename = "@odata.type")]
    pub odata_type: String,
    pub user_id: Option<String>,
    pub group_id: Option<String>,
    pub description: Option<String>,
}

/// `approval` with its stages expanded: `steps` on beta (directory roles),
/// `stages` on v1.0 (groups).
#[derive(Debug, Clone, Deserialize)]
pub struct Approval {
    pub id: String,
    #[serde(default, alias = "stages")]
    pub steps: Vec<ApprovalStep>,
}

/// `approvalStep` (beta), `approvalStage` (v1.0): the same properties.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalStep {
    pub id: String,
    /// `NotStarted`, `InProgress`, `Completed`, `Escalating`.
    pub status: Option<String>,
    /// `NotReviewed`, `Approve`, `Deny`.
    pub review_result: Option<String>,
    pub assigned_to_me: Option<bool>,
    pub justification: Option<String>,
    pub reviewed_date_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub reviewed_by: Option<Identity>,
}

/// What an approver sends to decide a step.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepDecision {
    pub review_result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
}

/// Graph's error body.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    #[serde(default)]
    pub message: String,
}
