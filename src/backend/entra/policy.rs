//! A role's terms from its PIM policy: the end-user assignment rules of the
//! role management policy (maximum duration; justification, ticket and MFA
//! on activation; approval and who gives it; authentication context), read
//! before the form opens so the form can check them as it does hoistd's.

use super::model::{PolicyAssignment, PolicyRule};

/// When a policy says nothing about duration: Entra's own default.
pub const DEFAULT_MAX_SECS: u64 = 8 * 3600;
/// The longest activation PIM allows at all: the form's limit when the
/// policy could not be read, so that it refuses nothing the tenant allows
/// (Entra refuses what its policy does not, and says so).
pub const PIM_MAX_SECS: u64 = 24 * 3600;
/// What the form offers first: an hour, or less where the policy allows less.
const DEFAULT_ASK_SECS: u64 = 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    pub max_duration_secs: u64,
    pub justification: bool,
    pub ticket: bool,
    pub mfa: bool,
    pub approval: bool,
    /// Approvers by name (as the policy describes them), users then groups.
    pub approvers: Vec<String>,
    pub approver_groups: Vec<String>,
    /// How long a request waits for a decision before it lapses.
    pub approval_timeout_days: Option<u32>,
    /// The authentication context a sign-in must satisfy, if any.
    pub authentication_context: Option<String>,
    /// The policy could not be read (reading it takes a directory reader's
    /// role that not everyone holds): the rest is Entra's defaults, and
    /// Entra checks the real rules at activation.
    pub unread: bool,
}

impl Default for Terms {
    fn default() -> Self {
        Terms {
            max_duration_secs: DEFAULT_MAX_SECS,
            justification: false,
            ticket: false,
            mfa: false,
            approval: false,
            approvers: Vec::new(),
            approver_groups: Vec::new(),
            approval_timeout_days: None,
            authentication_context: None,
            unread: false,
        }
    }
}

impl Terms {
    pub fn default_duration_secs(&self) -> u64 {
        DEFAULT_ASK_SECS.min(self.max_duration_secs)
    }

    /// The terms Entra enforces that the form cannot check, in a few words.
    pub fn notes(&self) -> Vec<&'static str> {
        let mut notes = Vec::new();
        if self.unread {
            notes.push("rules that could not be read here (they apply at activation)");
        }
        if self.mfa {
            notes.push("MFA at activation");
        }
        if self.authentication_context.is_some() {
            notes.push("stronger sign-in (authentication context)");
        }
        if self.approval {
            notes.push("approval");
        }
        notes
    }
}

/// The rules that apply when the person activates the role themselves are
/// the `EndUser_Assignment` ones; the others govern admins and eligibility.
fn end_user(rule: &PolicyRule) -> bool {
    rule.id.ends_with("_EndUser_Assignment")
}

pub fn terms(assignments: &[PolicyAssignment]) -> Terms {
    let mut terms = Terms::default();
    let rules = assignments
        .iter()
        .filter_map(|a| a.policy.as_ref())
        .flat_map(|p| &p.rules)
        .filter(|rule| end_user(rule));
    for rule in rules {
        match rule.odata_type.trim_start_matches('#') {
            "microsoft.graph.unifiedRoleManagementPolicyExpirationRule" => {
                if let Some(max) = rule.maximum_duration.as_deref().and_then(iso_duration) {
                    terms.max_duration_secs = max;
                }
            }
            "microsoft.graph.unifiedRoleManagementPolicyEnablementRule" => {
                for enabled in &rule.enabled_rules {
                    match enabled.as_str() {
                        "Justification" => terms.justification = true,
                        "Ticketing" => terms.ticket = true,
                        "MultiFactorAuthentication" => terms.mfa = true,
                        _ => {}
                    }
                }
            }
            "microsoft.graph.unifiedRoleManagementPolicyApprovalRule" => {
                let Some(setting) = &rule.setting else {
                    continue;
                };
                terms.approval = setting.is_approval_required;
                for stage in &setting.approval_stages {
                    terms.approval_timeout_days = stage.approval_stage_time_out_in_days;
                    for approver in &stage.primary_approvers {
                        let name = approver
                            .description
                            .clone()
                            .or_else(|| approver.user_id.clone())
                            .or_else(|| approver.group_id.clone());
                        let Some(name) = name else { continue };
                        if approver.odata_type.ends_with("groupMembers") {
                            terms.approver_groups.push(name);
                        } else {
                            terms.approvers.push(name);
                        }
                    }
                }
            }
            "microsoft.graph.unifiedRoleManagementPolicyAuthenticationContextRule"
                if rule.is_enabled == Some(true) =>
            {
                terms.authentication_context = rule.claim_value.clone();
            }
            _ => {}
        }
    }
    terms
}

/// An ISO 8601 duration as PIM writes them (`PT8H`, `PT30M`, `P1D`,
/// `P1DT12H`, `PT1H30M`), in seconds. Years and months never appear in
/// activation limits and are not accepted; nor is anything that is not
/// ASCII, negative, or more seconds than a `u64` holds.
pub fn iso_duration(text: &str) -> Option<u64> {
    if !text.is_ascii() {
        return None;
    }
    let rest = text.strip_prefix('P')?;
    let (days, time) = match rest.split_once('T') {
        Some((days, time)) => (days, Some(time)),
        None => (rest, None),
    };
    let mut secs = 0u64;
    if !days.is_empty() {
        let (n, unit) = days.split_at(days.len() - 1);
        let n: u64 = n.parse().ok()?;
        let per = match unit {
            "D" => 86_400,
            "W" => 7 * 86_400,
            _ => return None,
        };
        secs = n.checked_mul(per)?;
    }
    if let Some(mut time) = time {
        if time.is_empty() {
            return None;
        }
        while !time.is_empty() {
            let split = time.find(|c: char| c.is_ascii_alphabetic())?;
            let (n, rest) = time.split_at(split);
            let n: f64 = n.parse().ok()?;
            if !n.is_finite() || n < 0.0 {
                return None;
            }
            let per = match &rest[..1] {
                "H" => 3600.0,
                "M" => 60.0,
                "S" => 1.0,
                _ => return None,
            };
            let part = n * per;
            if part >= u64::MAX as f64 {
                return None;
            }
            secs = secs.checked_add(part as u64)?;
            time = &rest[1..];
        }
    }
    Some(secs)
}

/// Seconds as an ISO 8601 duration for `afterDuration` expirations.
pub fn to_iso_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut text = String::from("PT");
    if h > 0 {
        text.push_str(&format!("{h}H"));
    }
    if m > 0 {
        text.push_str(&format!("{m}M"));
    }
    if s > 0 || (h == 0 && m == 0) {
        text.push_str(&format!("{s}S"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_pim_writes_them() {
        assert_eq!(iso_duration("PT8H"), Some(8 * 3600));
        assert_eq!(iso_duration("PT30M"), Some(1800));
        assert_eq!(iso_duration("P1D"), Some(86_400));
        assert_eq!(iso_duration("P1DT12H"), Some(129_600));
        assert_eq!(iso_duration("PT1H30M"), Some(5400));
        assert_eq!(iso_duration("PT90S"), Some(90));
        assert_eq!(iso_duration("8h"), None);
        assert_eq!(iso_duration("P1Y"), None);
        assert_eq!(iso_duration("PT"), None);
        // Odd text from the server is refused, never a panic or a wrap.
        assert_eq!(iso_duration("P1\u{e9}"), None);
        assert_eq!(iso_duration("PT1\u{e9}"), None);
        assert_eq!(iso_duration("P18446744073709551615D"), None);
        assert_eq!(iso_duration("PT1e300H"), None);
        assert_eq!(iso_duration("PT-1H"), None);
        assert_eq!(iso_duration("PTNaNH"), None);
        assert_eq!(iso_duration("P213503982334601DT10H"), None);
        for secs in [60, 1800, 3600, 5400, 5430, 28_800, 0] {
            assert_eq!(iso_duration(&to_iso_duration(secs)), Some(secs));
        }
        assert_eq!(to_iso_duration(5400), "PT1H30M");
    }

    #[test]
    fn end_user_rules_make_the_terms() {
        let assignment: PolicyAssignment = serde_json::from_value(serde_json::json!({
            "policyId": "p",
            "policy": { "rules": [
                { "@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyExpirationRule",
                  "id": "Expiration_EndUser_Assignment", "isExpirationRequired": true, "maximumDuration": "PT2H" },
                { "@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyExpirationRule",
                  "id": "Expiration_Admin_Eligibility", "isExpirationRequired": true, "maximumDuration": "P365D" },
                { "@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyEnablementRule",
                  "id": "Enablement_EndUser_Assignment", "enabledRules": ["Justification", "Ticketing", "MultiFactorAuthentication"] },
                { "@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyApprovalRule",
                  "id": "Approval_EndUser_Assignment",
                  "setting": { "isApprovalRequired": true, "approvalStages": [
                    { "approvalStageTimeOutInDays": 1, "primaryApprovers": [
                      { "@odata.type": "#microsoft.graph.singleUser", "userId": "u1", "description": "Bob" },
                      { "@odata.type": "#microsoft.graph.groupMembers", "groupId": "g1", "description": "Security desk" } ] } ] } },
                { "@odata.type": "#microsoft.graph.unifiedRoleManagementPolicyAuthenticationContextRule",
                  "id": "AuthenticationContext_EndUser_Assignment", "isEnabled": true, "claimValue": "c1" }
            ] }
        }))
        .unwrap();
        let terms = terms(&[assignment]);
        assert_eq!(terms.max_duration_secs, 7200);
        assert_eq!(terms.default_duration_secs(), 3600);
        assert!(terms.justification && terms.ticket && terms.mfa && terms.approval);
        assert_eq!(terms.approvers, vec!["Bob".to_string()]);
        assert_eq!(terms.approver_groups, vec!["Security desk".to_string()]);
        assert_eq!(terms.approval_timeout_days, Some(1));
        assert_eq!(terms.authentication_context.as_deref(), Some("c1"));
    }
}
