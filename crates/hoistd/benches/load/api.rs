//! The broker's API as the load generator calls it, and how latencies are
//! summarised and reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hoist_api::{AccessRequest, CreateRequest, Decision, ReviewInput};
use serde_json::json;

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    /// The first instance's URL.
    pub base: String,
    /// Every instance's URL (`--url A,B`): calls go to each in turn.
    bases: Arc<Vec<String>>,
    turn: Arc<AtomicUsize>,
}

pub struct Failure(pub String);

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Api {
    pub fn new(base: &str) -> Api {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(4096)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let bases: Vec<String> = base
            .split(',')
            .map(|b| b.trim_end_matches('/').to_string())
            .collect();
        Api {
            http,
            base: bases[0].clone(),
            bases: Arc::new(bases),
            turn: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The same client, calling only instance `index` (modulo how many
    /// there are).
    pub fn on(&self, index: usize) -> Api {
        let base = self.bases[index % self.bases.len()].clone();
        Api {
            http: self.http.clone(),
            base: base.clone(),
            bases: Arc::new(vec![base]),
            turn: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn next_base(&self) -> &str {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        &self.bases[turn % self.bases.len()]
    }

    pub async fn call(
        &self,
        user: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, Failure> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.next_base()))
            .bearer_auth(format!("tok-{user}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| Failure(e.to_string()))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| Failure(e.to_string()))?;
        if !status.is_success() {
            return Err(Failure(format!(
                "{path}: {status}: {}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| Failure(format!("{path}: {e}")))
    }

    pub async fn create(&self, user: &str, role: &str) -> Result<AccessRequest, Failure> {
        let body = CreateRequest {
            role: role.to_string(),
            justification: "Load test of the broker: a routine request".into(),
            ticket: None,
            incident: None,
            duration_secs: None,
            starts_at: None,
            break_glass: false,
        };
        let value = self
            .call(
                user,
                reqwest::Method::POST,
                "/v1/requests",
                Some(serde_json::to_value(body).unwrap()),
            )
            .await?;
        serde_json::from_value(value).map_err(|e| Failure(e.to_string()))
    }

    pub async fn approve(&self, reviewer: &str, id: &str) -> Result<AccessRequest, Failure> {
        let body = ReviewInput {
            decision: Decision::Approve,
            comment: None,
        };
        let value = self
            .call(
                reviewer,
                reqwest::Method::POST,
                &format!("/v1/requests/{id}/reviews"),
                Some(serde_json::to_value(body).unwrap()),
            )
            .await?;
        serde_json::from_value(value).map_err(|e| Failure(e.to_string()))
    }
}

/// Latencies of one kind of call.
#[derive(Default)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    pub fn summary(&mut self) -> serde_json::Value {
        let samples = &mut self.0;
        if samples.is_empty() {
            return json!({ "samples": 0 });
        }
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let at = |q: f64| {
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            ms(samples[rank - 1])
        };
        json!({
            "samples": samples.len(),
            "p50_ms": at(0.5),
            "p90_ms": at(0.9),
            "p99_ms": at(0.99),
            "max_ms": ms(*samples.last().unwrap()),
        })
    }
}

pub fn emit(id: &str, metrics: serde_json::Value, meta: serde_json::Value) {
    println!(
        "{}",
        json!({ "id": id, "run": 0, "metrics": metrics, "meta": meta })
    );
}
