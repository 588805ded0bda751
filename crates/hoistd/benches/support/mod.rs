//! What the benchmark programs share: their argument parsing and the names
//! of the roles `fixture policy` writes and `load` requests.

use std::path::PathBuf;
use std::str::FromStr;

pub struct Args(pub Vec<String>);

impl Args {
    pub fn value(&self, name: &str) -> Option<&str> {
        let at = self.0.iter().position(|a| a == name)?;
        self.0.get(at + 1).map(String::as_str)
    }

    pub fn number<T: FromStr>(&self, name: &str, default: T) -> T {
        self.value(name)
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name} takes a number, not `{v}`"))
            })
            .unwrap_or(default)
    }

    #[allow(dead_code, reason = "fixture reads paths; load does not")]
    pub fn path(&self, name: &str) -> PathBuf {
        PathBuf::from(
            self.value(name)
                .unwrap_or_else(|| panic!("{name} is required")),
        )
    }
}

const ENVS: [(&str, &str); 5] = [
    ("prod", "Production"),
    ("staging", "Staging"),
    ("dev", "Development"),
    ("qa", "QA"),
    ("sandbox", "Sandbox"),
];
const SERVICES: [(&str, &str); 10] = [
    ("db", "database"),
    ("k8s", "Kubernetes cluster"),
    ("deploy", "deploy pipeline"),
    ("logs", "logs and traces"),
    ("kafka", "Kafka cluster"),
    ("redis", "Redis cache"),
    ("s3", "object storage"),
    ("vault", "Vault secrets"),
    ("ssh", "bastion shell"),
    ("billing", "billing service"),
];
const ACCESS: [&str; 4] = ["admin", "read", "write", "operator"];

/// Role `i`: its id and display name, as a large organisation would name
/// them (`prod-db-admin-0042`).
pub fn role(i: usize) -> (String, String) {
    let (env, env_name) = ENVS[i % ENVS.len()];
    let (service, service_name) = SERVICES[(i / ENVS.len()) % SERVICES.len()];
    let access = ACCESS[(i / (ENVS.len() * SERVICES.len())) % ACCESS.len()];
    let unit = i / (ENVS.len() * SERVICES.len() * ACCESS.len());
    (
        format!("{env}-{service}-{access}-{unit:04}"),
        format!("{env_name} {service_name} {access} (unit {unit})"),
    )
}

/// Role `i`'s id.
#[allow(
    dead_code,
    reason = "load requests roles by id; fixture writes them whole"
)]
pub fn role_id(i: usize) -> String {
    role(i).0
}
