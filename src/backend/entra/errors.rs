//! Graph's failures in hoist's words. PIM's own error codes become messages
//! that say what to do; a few are not failures at all where the truth is
//! that the person already has what they asked for (see [`Known`]).

use hoist_api::ErrorCode;

use super::graph::GraphError;
use crate::backend::BackendError;

/// PIM outcomes hoist recognises by their code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// The role is already active for this person.
    AssignmentExists,
    /// A request for the same activation is already pending.
    RequestExists,
    /// The role is not active for this person (any more).
    AssignmentMissing,
    /// The role's authentication context needs a stronger sign-in; the
    /// claims to ask the authority for.
    ClaimsChallenge(String),
    Other,
}

/// What a failure is, by its code.
pub fn known(error: &GraphError) -> Known {
    let GraphError::Status { code, message, .. } = error else {
        return Known::Other;
    };
    match code.as_str() {
        "RoleAssignmentExists" => Known::AssignmentExists,
        "RoleAssignmentRequestExists" => Known::RequestExists,
        "RoleAssignmentDoesNotExist" => Known::AssignmentMissing,
        "RoleAssignmentRequestAcrsValidationFailed" => match claims_in(message) {
            Some(claims) => Known::ClaimsChallenge(claims),
            None => Known::Other,
        },
        _ => Known::Other,
    }
}

/// The claims value in an authentication context failure: Graph puts it in
/// the message as `&claims=` followed by the URL-encoded JSON, or as the
/// JSON itself.
pub fn claims_in(message: &str) -> Option<String> {
    if let Some(at) = message.find("claims=") {
        let encoded: String = message[at + "claims=".len()..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '&' && *c != '"')
            .collect();
        let decoded = percent_decode(&encoded)?;
        return is_claims(&decoded).then_some(decoded);
    }
    let start = message.find("{\"access_token\"")?;
    let mut depth = 0usize;
    for (offset, c) in message[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    let json = &message[start..=start + offset];
                    return is_claims(json).then(|| json.to_string());
                }
            }
            _ => {}
        }
    }
    None
}

fn is_claims(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.get("access_token").is_some())
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The policy rules a `RoleAssignmentRequestPolicyValidationFailed` names,
/// in hoist's words, with the closest error code.
fn policy_rules(message: &str) -> (ErrorCode, String) {
    let mut code = ErrorCode::InvalidBody;
    let mut said = Vec::new();
    if message.contains("MfaRule") {
        code = ErrorCode::Forbidden;
        said.push(
            "this role needs multi-factor authentication when it is activated, and this \
             sign-in did not use it: run `hoist login` and complete it in a browser window \
             that is not signed in to Microsoft (a private one), so that it asks for your \
             second factor, then retry",
        );
    }
    if message.contains("ExpirationRule") {
        code = ErrorCode::DurationTooLong;
        said.push("the duration is longer than the role's policy allows");
    }
    if message.contains("JustificationRule") {
        code = ErrorCode::JustificationTooShort;
        said.push("the role's policy requires a justification");
    }
    if message.contains("TicketingRule") {
        code = ErrorCode::TicketRequired;
        said.push(
            "the role's policy requires ticket information: a ticket number (--ticket), and the \
             system it is from (the profile's `ticket_system`)",
        );
    }
    if said.is_empty() {
        return (
            ErrorCode::InvalidBody,
            format!("Entra refused the request under the role's policy: {message}"),
        );
    }
    (code, said.join("; "))
}

/// A failure as a [`BackendError`]; `doing` names the call for messages
/// that would otherwise say nothing about where they came from.
pub fn to_backend(error: GraphError, graph: &str, doing: &str) -> BackendError {
    match error {
        GraphError::Unreachable(reason) => BackendError::Unreachable {
            url: graph.to_string(),
            reason,
        },
        GraphError::Protocol(reason) => {
            BackendError::Protocol(format!("Microsoft Graph, {doing}: {reason}"))
        }
        GraphError::Status {
            status,
            code,
            message,
        } => {
            let refused = |code: ErrorCode, message: String| BackendError::Refused {
                status,
                code,
                message,
            };
            match (status, code.as_str()) {
                (401, _) => BackendError::Unauthenticated(format!(
                    "Microsoft Graph refused the session ({message})"
                )),
                (_, "RoleAssignmentRequestPolicyValidationFailed") => {
                    let (code, message) = policy_rules(&message);
                    refused(code, message)
                }
                (_, "ActiveDurationTooShort") => refused(
                    ErrorCode::InvalidState,
                    "Entra lets a role be deactivated only once it has been active for 5 \
                     minutes; try again shortly (it ends by itself at its expiry otherwise)"
                        .into(),
                ),
                (_, "RoleAssignmentRequestAcrsValidationFailed") => refused(
                    ErrorCode::Forbidden,
                    "this role needs a stronger sign-in (its authentication context) than \
                     Entra accepted: your organisation's Conditional Access decides what it \
                     takes (a compliant device, a phishing-resistant method, a trusted \
                     network); activating it once in the Entra portal shows what it asks, or \
                     ask your Entra administrator"
                        .into(),
                ),
                (_, "RoleAssignmentExists") => refused(
                    ErrorCode::InvalidState,
                    "the role is already active for you".into(),
                ),
                (_, "RoleAssignmentRequestExists") => refused(
                    ErrorCode::InvalidState,
                    "a request for this role is already pending".into(),
                ),
                (_, "RoleAssignmentDoesNotExist") => refused(
                    ErrorCode::InvalidState,
                    "the role is not active (any more)".into(),
                ),
                (_, "StepUpFailed") => refused(ErrorCode::Forbidden, message),
                (_, "StepUpUnreachable") => refused(ErrorCode::Unavailable, message),
                // A decision's conflict is read where decisions are made
                // (approvals.rs); here it is whatever `doing` met.
                (409, _) => refused(
                    ErrorCode::InvalidState,
                    format!(
                        "Microsoft Graph refused {doing}: it conflicts with the current state ({message})"
                    ),
                ),
                (403, _) => refused(
                    ErrorCode::Forbidden,
                    format!(
                        "Microsoft Graph refused {doing} ({message}); if this is the first \
                         time, ask whoever administers the app registration to grant its \
                         delegated scopes (see the README's Entra PIM section)"
                    ),
                ),
                (404, _) => refused(ErrorCode::NotFound, format!("{doing}: not found")),
                (429, _) => refused(
                    ErrorCode::RateLimited,
                    format!(
                        "Microsoft Graph is throttling ({}); try again shortly",
                        crate::text::sanitize::line(&message)
                    ),
                ),
                // Graph or its gateway away or overloaded: try again, as for
                // a broker that cannot be reached.
                (502..=504, _) => refused(
                    ErrorCode::Unavailable,
                    format!(
                        "Microsoft Graph is unavailable ({doing}: {message}); try again shortly"
                    ),
                ),
                (500.., _) => refused(
                    ErrorCode::Internal,
                    format!("Microsoft Graph failed {doing}: {message}"),
                ),
                _ => refused(
                    ErrorCode::InvalidBody,
                    format!("Microsoft Graph refused {doing}: {message}"),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, code: &str, message: &str) -> GraphError {
        GraphError::Status {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    #[test]
    fn policy_failures_say_which_rule() {
        let err = to_backend(
            status(
                400,
                "RoleAssignmentRequestPolicyValidationFailed",
                "The following policy rules failed: [\"TicketingRule\",\"JustificationRule\"]",
            ),
            "g",
            "activating",
        );
        let BackendError::Refused { code, message, .. } = err else {
            panic!("{err:?}");
        };
        assert_eq!(code, ErrorCode::TicketRequired);
        assert!(message.contains("ticket number"), "{message}");
        assert!(message.contains("justification"), "{message}");
        let mfa = to_backend(
            status(
                400,
                "RoleAssignmentRequestPolicyValidationFailed",
                "[\"MfaRule\"]",
            ),
            "g",
            "activating",
        );
        assert!(mfa.to_string().contains("multi-factor"), "{mfa}");
        assert!(
            to_backend(status(400, "ActiveDurationTooShort", "x"), "g", "d")
                .to_string()
                .contains("5 minutes")
        );
        // A conflict outside a decision is not "another approver decided".
        let conflict = to_backend(status(409, "", "busy"), "g", "cancelling r1");
        assert_eq!(conflict.code(), Some(ErrorCode::InvalidState));
        assert!(
            conflict.to_string().contains("cancelling r1") && conflict.to_string().contains("busy"),
            "{conflict}"
        );
        assert!(matches!(
            to_backend(status(401, "InvalidAuthenticationToken", "x"), "g", "d"),
            BackendError::Unauthenticated(_)
        ));
    }

    #[test]
    fn the_claims_challenge_is_read_either_way() {
        let json = r#"{"access_token":{"acrs":{"essential":true,"value":"c1"}}}"#;
        let encoded = "%7B%22access_token%22%3A%7B%22acrs%22%3A%7B%22essential%22%3Atrue%2C%22value%22%3A%22c1%22%7D%7D%7D";
        let message =
            format!("The authentication context requirement was not met. &claims={encoded}");
        assert_eq!(claims_in(&message).as_deref(), Some(json));
        assert_eq!(
            claims_in(&format!("need {json} here")).as_deref(),
            Some(json)
        );
        assert_eq!(claims_in("no claims at all"), None);
        assert_eq!(
            known(&status(
                400,
                "RoleAssignmentRequestAcrsValidationFailed",
                &message
            )),
            Known::ClaimsChallenge(json.into())
        );
        assert_eq!(
            known(&status(400, "RoleAssignmentExists", "x")),
            Known::AssignmentExists
        );
    }
}
