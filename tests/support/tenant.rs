//! An Entra tenant for tests: the fake Graph (`graph.rs`) and a real
//! OpenID provider mounted as the tenant's authority (`oidc.rs`), whose
//! tokens the fake verifies; the profile that points hoist at them, and
//! sign-in as any of the tenant's people. Include it beside both with
//! `#[path = "../support/tenant.rs"] mod tenant;`.

#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use hoist::auth::secrets::Session;
use hoist::backend::{self, Backend, Hooks};
use hoist::config::{Config, Target};

use super::graph::FakeGraph;
use super::oidc;

pub const TENANT: &str = "contoso.example";

pub struct Tenant {
    pub provider: Arc<oidc::Provider>,
    pub graph: FakeGraph,
}

impl Tenant {
    pub async fn start() -> Tenant {
        let (listener, url) = FakeGraph::bind().await;
        let provider = Arc::new(oidc::Provider::start_entra(TENANT, &url).await);
        let graph = FakeGraph::serve(listener, url, &provider.issuer).await;
        Tenant { provider, graph }
    }

    /// The config lines of an Entra profile for this tenant.
    pub fn profile(&self) -> String {
        self.profile_named("entra")
    }

    /// The same, as profile `name`.
    pub fn profile_named(&self, name: &str) -> String {
        format!(
            "[profiles.{name}]\nkind = \"entra\"\ntenant = \"{TENANT}\"\nclient_id = \"hoist\"\n\
             graph = \"{}\"\nauthority = \"{}\"\npoll = \"1s\"\nticket_system = \"ServiceNow\"\n",
            self.graph.url,
            self.provider.authority()
        )
    }

    pub fn target(&self) -> Target {
        let config = Config::parse(std::path::Path::new("c.toml"), &self.profile()).unwrap();
        config.resolve(None, Some("entra")).unwrap()
    }

    /// Signs in as `who` with hoist's own device flow, approved at the
    /// provider as the person would, optionally asking for `claims`.
    pub async fn sign_in(&self, who: &str, claims: Option<&str>) -> Session {
        let hoist::config::Backend::Entra(tenant) = self.target().backend else {
            unreachable!()
        };
        let provider = hoist::auth::entra::provider(&tenant).await.unwrap();
        let (sender, receiver) = tokio::sync::oneshot::channel::<String>();
        let mut sender = Some(sender);
        let login = provider.sign_in_device_with(
            |prompt| {
                let url = prompt.verification_uri_complete.clone().unwrap();
                let _ = sender.take().unwrap().send(url);
            },
            claims,
        );
        let approve = async {
            let url = receiver.await.unwrap();
            self.provider.approve_device(&url, who).await;
        };
        let (session, ()) = tokio::join!(login, approve);
        session.unwrap()
    }

    pub async fn backend(&self, who: &str) -> Arc<dyn Backend> {
        let session = self.sign_in(who, None).await;
        backend::connect_to(&self.target(), &session.access_token, Hooks::default()).unwrap()
    }
}
