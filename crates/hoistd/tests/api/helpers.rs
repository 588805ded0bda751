//! The test broker and its typed client live in `hoistd::testing`, which the
//! client's tests share.

pub use hoistd::testing::*;

/// The state of alice's grant `id`'s access at its target, if it has one.
pub async fn access_state(broker: &TestBroker, id: &str) -> Option<hoist_api::AccessState> {
    let grant = broker.as_user("alice").grant(id).await.unwrap();
    grant.access.map(|a| a.state)
}

/// Waits (up to 30 s) until alice's grant `id`'s access is in `state`.
pub async fn until_access(broker: &TestBroker, id: &str, state: hoist_api::AccessState) {
    eventually(std::time::Duration::from_secs(30), || async {
        access_state(broker, id).await == Some(state)
    })
    .await;
}
