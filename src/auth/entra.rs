//! Signing in to Microsoft Entra for the Entra PIM backend: the tenant's
//! authority (a profile setting, so national clouds work), the customer's
//! own app registration as a public client, and the delegated Graph scopes
//! hoist needs. The bearer is the access token Entra issues for Graph.
//!
//! A role whose policy names an authentication context makes Graph refuse
//! the activation with a claims challenge; [`step_up`] signs in again with
//! those claims, keeps the new session, and hands back its token.

use std::sync::Arc;

use crate::auth::secrets::Session;
use crate::auth::sso::{self, Bearer, DevicePrompt, Provider, SsoError};
use crate::backend::Backend;
use crate::backend::BackendError;
use crate::backend::entra::{StepUp, StepUpError};
use crate::config::EntraTenant;

/// The delegated Microsoft Graph permissions hoist asks for, each for one
/// thing it does (the README explains them to whoever grants them).
pub const GRAPH_SCOPES: [&str; 7] = [
    // Who you are: your object id goes in every activation request.
    "User.Read",
    // Your eligible directory roles.
    "RoleEligibilitySchedule.Read.Directory",
    // Activating and deactivating them, your requests and active roles,
    // and deciding approvals as an approver.
    "RoleAssignmentSchedule.ReadWrite.Directory",
    // Their PIM policy: duration, justification, ticket, MFA, approval.
    "RoleManagementPolicy.Read.Directory",
    // Your eligible group memberships and ownerships (PIM for Groups).
    "PrivilegedEligibilitySchedule.Read.AzureADGroup",
    // Activating and deactivating them, and their approvals.
    "PrivilegedAssignmentSchedule.ReadWrite.AzureADGroup",
    // Their PIM policy.
    "RoleManagementPolicy.Read.AzureADGroup",
];

/// Everything asked for at sign-in: OpenID Connect's own scopes, and each
/// Graph scope named with the profile's Graph root, so a national cloud's
/// Graph is the resource the token is for.
pub fn scopes(tenant: &EntraTenant) -> Vec<String> {
    ["openid", "profile", "offline_access"]
        .into_iter()
        .map(str::to_string)
        .chain(
            GRAPH_SCOPES
                .iter()
                .map(|scope| format!("{}/{scope}", tenant.graph)),
        )
        .collect()
}

/// The tenant's OpenID provider, from `{authority}/{tenant}/v2.0`.
pub async fn provider(tenant: &EntraTenant) -> Result<Provider, SsoError> {
    let metadata = format!(
        "{}/v2.0/.well-known/openid-configuration",
        tenant.tenant_authority()
    );
    sso::discover_at(
        &metadata,
        &tenant.authority,
        &tenant.client_id,
        scopes(tenant),
        Bearer::AccessToken,
    )
    .await
}

/// Shows the person what to do for a device sign-in (stderr for commands,
/// a banner in the TUI).
pub type Prompt = Arc<dyn Fn(&DevicePrompt) + Send + Sync>;

/// Signs in again with the claims Graph asked for, keeps the session for
/// `user` under `broker`, and answers its token. A sign-in as anyone but
/// `user` (another account the browser holds) is refused and nothing is
/// kept: its session would otherwise act, and be stored, as theirs.
pub fn step_up(tenant: EntraTenant, broker: String, user: String, prompt: Prompt) -> StepUp {
    Arc::new(move |claims: String| {
        let (tenant, broker, user, prompt) = (
            tenant.clone(),
            broker.clone(),
            user.clone(),
            Arc::clone(&prompt),
        );
        Box::pin(async move {
            let provider = provider(&tenant).await.map_err(from_sso)?;
            let session: Session = provider
                .sign_in_device_with(|p| prompt(p), Some(&claims))
                .await
                .map_err(from_sso)?;
            let token = session.access_token.clone();
            let signed_in = crate::backend::entra::EntraClient::new(&tenant, &token)
                .map_err(from_backend)?
                .me()
                .await
                .map_err(from_backend)?
                .user;
            if signed_in != user {
                return Err(StepUpError::Failed(format!(
                    "the sign-in was as {}, not {}; nothing kept",
                    crate::text::sanitize::line(&signed_in),
                    crate::text::sanitize::line(&user)
                )));
            }
            let orphan = crate::auth::session::save_held(&broker, &user, &session)
                .await
                .map_err(|e| StepUpError::Failed(e.to_string()))?;
            // A renewal held unsaved, which the new sign-in supersedes.
            if let Some(spare) = orphan.and_then(|held| held.refresh_token)
                && let Err(err) = provider.revoke(&spare).await
            {
                tracing::warn!(error = %err, "could not revoke a refresh token no session keeps");
            }
            Ok(token)
        })
    })
}

/// A provider that did not answer is away, not a refusal.
fn from_sso(err: SsoError) -> StepUpError {
    match err {
        SsoError::Unreachable { .. } => StepUpError::Unreachable(err.to_string()),
        other => StepUpError::Failed(other.to_string()),
    }
}

/// Graph away, busy or throttling when asked who signed in: the same.
fn from_backend(err: BackendError) -> StepUpError {
    if err.is_transient() {
        StepUpError::Unreachable(err.to_string())
    } else {
        StepUpError::Failed(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_name_the_profiles_graph() {
        let tenant = EntraTenant {
            tenant: "t".into(),
            client_id: "c".into(),
            graph: "https://graph.microsoft.us".into(),
            authority: "https://login.microsoftonline.us".into(),
            poll: std::time::Duration::from_secs(15),
            ticket_system: None,
        };
        let scopes = scopes(&tenant);
        assert_eq!(&scopes[..3], ["openid", "profile", "offline_access"]);
        assert!(scopes.contains(
            &"https://graph.microsoft.us/RoleAssignmentSchedule.ReadWrite.Directory".to_string()
        ));
        assert_eq!(scopes.len(), 3 + GRAPH_SCOPES.len());
    }
}
