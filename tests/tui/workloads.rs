//! A workload waits for a person: its request arrives in the approver's
//! Reviews queue with the workload's claims and its run link, the approver
//! approves it with the same keys as any request, and the job's next poll
//! gets its credential; the approver then sees the workload's grant on
//! Grants, and Activity narrows to workloads with `w`.

use crossterm::event::KeyCode;
use hoist::tui::{App, Options};
use hoist::ui::theme::Theme;
use hoist_api::{JWT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT, TokenExchangeResponse};
use reqwest::StatusCode;

use crate::helpers::*;
use crate::oidc::Provider;

const AUDIENCE: &str = "https://hoist.test/ci";

async fn exchange(url: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/v1/token"))
        .form(&[
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("subject_token", token),
            ("subject_token_type", JWT_TOKEN_TYPE),
            ("scope", "prod-deploy"),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_approver_approves_a_waiting_workload_in_the_reviews_screen() {
    let provider = Provider::start().await;
    let policy = format!(
        "{}\n[[workloads]]\nname = \"ci\"\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n\
         run_url = \"https://ci.example/{{repository}}/runs/{{run_id}}\"\n\
         [workloads.claims]\nsub = \"deploy-bot\"\nrepository = \"acme/*\"\n\
         [[workloads.roles]]\nrole = \"prod-deploy\"\nmax_ttl_minutes = 10\napproval = \"person\"\n",
        hoist::demo::DEMO_POLICY,
        provider.issuer
    );
    let broker = hoistd::testing::TestBroker::builder()
        .policy(&policy)
        .token_prefix("demo-")
        .start()
        .await;
    let token = provider
        .workload_token(
            "deploy-bot",
            AUDIENCE,
            &serde_json::json!({ "repository": "acme/app", "run_id": 99 }),
            None,
        )
        .await;
    let pending = exchange(&broker.url(), &token).await;
    assert_eq!(pending.status(), StatusCode::ACCEPTED);

    let client = hoist::backend::connect(&broker.url(), "demo-bob").unwrap();
    let options = Options {
        theme: Theme::default(),
        ..Options::default()
    };
    let mut bob = App::start(client, options);
    assert!(bob.wait_until(WAIT, |s| s.loaded && s.me.is_some()).await);
    key(&mut bob, KeyCode::Char('4'));
    let workload = "workload:ci:deploy-bot";
    assert!(
        bob.wait_until(WAIT, |s| s.queue.iter().any(|r| r.requester == workload))
            .await
    );
    let position = bob
        .state
        .queue
        .iter()
        .position(|r| r.requester == workload)
        .unwrap();
    for _ in 0..position {
        key(&mut bob, KeyCode::Down);
    }
    assert_eq!(bob.state.selected_review().unwrap().1.requester, workload);
    let drawn = screen(&bob.state, 160, 48);
    for shown in [
        "workload:ci:deploy-bot",
        "repository: acme/app",
        "https://ci.example/acme/app/runs/99",
    ] {
        assert!(drawn.contains(shown), "{shown} not in:\n{drawn}");
    }
    key(&mut bob, KeyCode::Char('a'));
    key(&mut bob, KeyCode::Enter);
    assert!(
        bob.wait_until(WAIT, |s| !s.queue.iter().any(|r| r.requester == workload))
            .await
    );

    // The job's next poll proceeds with its credential.
    let issued = exchange(&broker.url(), &token).await;
    assert_eq!(issued.status(), StatusCode::OK);
    let issued: TokenExchangeResponse = issued.json().await.unwrap();
    assert_eq!(issued.scope, "prod-deploy");

    // As its approver, bob sees the workload's grant beside his own, with
    // the workload that holds it.
    key(&mut bob, KeyCode::Char('R'));
    assert!(
        bob.wait_until(WAIT, |s| s
            .workload_grants
            .iter()
            .any(|g| g.holder == workload && g.role == "prod-deploy"))
            .await
    );
    key(&mut bob, KeyCode::Char('3'));
    let drawn = screen(&bob.state, 160, 48);
    assert!(drawn.contains("workloads (1)"), "{drawn}");
    let row = drawn
        .lines()
        .find(|l| l.contains(workload))
        .unwrap_or_else(|| panic!("no row for the workload in:\n{drawn}"));
    assert!(row.contains("prod-deploy"), "{row}");
    assert!(row.contains(":"), "a countdown: {row}");

    // Activity: w narrows to people, then to workloads.
    key(&mut bob, KeyCode::Char('5'));
    assert!(bob.wait_until(WAIT, |s| !s.activity.is_empty()).await);
    let everyone = bob.state.visible_activity().len();
    key(&mut bob, KeyCode::Char('w'));
    let people = bob.state.visible_activity().len();
    assert!(bob.state.visible_activity().iter().all(|e| {
        !e.actor.starts_with("workload:")
            && !e
                .subject
                .as_deref()
                .is_some_and(|s| s.starts_with("workload:"))
    }));
    key(&mut bob, KeyCode::Char('w'));
    let workloads = bob.state.visible_activity().len();
    assert!(workloads > 0, "bob's approval of the workload is about it");
    assert_eq!(people + workloads, everyone);
    let drawn = screen(&bob.state, 160, 48);
    assert!(drawn.contains("Activity: workloads"), "{drawn}");
}
