//! Target systems: where a grant's access lives (a PostgreSQL role, a
//! webhook's system), whether it is there yet, and how its holder uses it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a grant's access is in its life at the target:
/// `provisioning -> live -> removing -> removed`, with `failed` while a
/// provisioning attempt failed and waits to be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccessState {
    /// The grant is active in hoist; the target has not confirmed the access yet.
    Provisioning,
    /// The target confirmed the access: the grant is usable.
    Live,
    /// Provisioning failed (see `reason`) and is tried again at
    /// `next_attempt_at`; the grant is active in hoist but not usable.
    Failed,
    /// The grant ended in hoist; the access is being removed at the target.
    /// A teardown that failed stays here, with its `reason`, and is retried
    /// until the target confirms.
    Removing,
    /// The target confirmed the access is gone.
    Removed,
}

impl AccessState {
    pub const ALL: [AccessState; 5] = [
        Self::Provisioning,
        Self::Live,
        Self::Failed,
        Self::Removing,
        Self::Removed,
    ];

    /// The name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Live => "live",
            Self::Failed => "failed",
            Self::Removing => "removing",
            Self::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

impl std::fmt::Display for AccessState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Part of `Grant` (`GET /v1/grants`, live events): where a grant's access
/// lives at a target system, and whether it is there yet. `Grant.access` is
/// `None` for a role with no target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TargetAccess {
    /// The policy's `[[targets]]` name, e.g. `db-prod-1`.
    pub target: String,
    /// The target's kind: `postgres`, `webhook`, ...
    pub kind: String,
    pub state: AccessState,
    /// Why the last attempt failed; shown to the requester and the approvers.
    pub reason: Option<String>,
    /// Attempts of the current step (provisioning or removal) so far.
    pub attempts: u32,
    /// When a failed step is tried again.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it last changed: strictly later at each change.
    pub updated_at: DateTime<Utc>,
    /// While an extension has not reached the target: when the access
    /// there ends, as the target last took it (before the grant's end). It
    /// stays usable until then, and credentials end then too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_until: Option<DateTime<Utc>>,
}

/// Part of `Credential` (`GET /v1/grants/{id}/credential`): how to use the
/// access at the target; what the TUI's credential view, `hoist credential
/// --format` and `hoist exec` hand over. Holds a secret: never logged, never
/// stored. Its `Debug` shows the variable names, never their values, the
/// URI or the command.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccessCredential {
    pub target: String,
    pub kind: String,
    /// Environment for a command, e.g. `PGHOST`, `PGPORT`, `PGDATABASE`,
    /// `PGUSER`, `PGPASSWORD`, `PGSSLMODE` for PostgreSQL. Sorted.
    pub env: BTreeMap<String, String>,
    /// A URI with the secret in it, where the kind has one
    /// (`postgresql://user:pw@host:port/db?sslmode=...`).
    pub uri: Option<String>,
    /// A ready command line for people, e.g.
    /// `PGPASSWORD=... psql 'postgresql://user@host:port/db?sslmode=...'`: a
    /// secret goes in the command's environment, never in its arguments.
    pub command: Option<String>,
    /// When this secret stops working; never after the grant's end.
    pub expires_at: DateTime<Utc>,
    /// For an `ssh` target: the OpenSSH user certificate issued for the
    /// public key the holder sent (`POST /v1/grants/{id}/credential`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<SshCertificate>,
}

/// Part of `AccessCredential`: an OpenSSH user certificate for the holder's
/// public key, valid for the grant's window only. Not secret (it is useless
/// without the private key), but it names the grant and the holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SshCertificate {
    /// The certificate as one line of a `*-cert.pub` file.
    pub certificate: String,
    /// The key id sshd logs and the KRL revokes: names the grant and holder.
    pub key_id: String,
    /// The users it may log in as.
    pub principals: Vec<String>,
    /// The grant's start, to the second below.
    pub valid_after: DateTime<Utc>,
    /// The grant's end, to the second below: never beyond it.
    pub valid_before: DateTime<Utc>,
    /// The certified public key's SHA-256 fingerprint (`SHA256:...`).
    pub fingerprint: String,
}

/// `POST /v1/grants/{id}/credential`: the credential, with what the target
/// issues for a public key of the holder's (an SSH user certificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialInput {
    /// One OpenSSH public key line (`ssh-ed25519 AAAA... comment`); an
    /// RSA key of 16384 bits is some 2,800 characters.
    #[schema(max_length = 8192)]
    pub public_key: String,
}

impl std::fmt::Debug for AccessCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: BTreeMap<&str, &str> = self
            .env
            .keys()
            .map(|name| (name.as_str(), crate::REDACTED))
            .collect();
        // The command is redacted too: a ready command line carries the URI.
        f.debug_struct("AccessCredential")
            .field("target", &self.target)
            .field("kind", &self.kind)
            .field("env", &env)
            .field("uri", &self.uri.as_ref().map(|_| crate::REDACTED))
            .field("command", &self.command.as_ref().map(|_| crate::REDACTED))
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Variables no target may set, whatever the policy declares: the ones that
/// decide what runs or where it looks for code, settings or trust (the
/// path, the loader, shells' start-up files and prompts, pagers and
/// editors, interpreters' option and module paths, proxies, CA bundles).
const NEVER_HANDED_OVER: &[&str] = &[
    "PATH",
    "HOME",
    "SHELL",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "IFS",
    "ENV",
    "BASH_ENV",
    "ZDOTDIR",
    "PS1",
    "PS2",
    "PS3",
    "PS4",
    "PROMPT_COMMAND",
    "CDPATH",
    "GLOBIGNORE",
    "SHELLOPTS",
    "BASHOPTS",
    "HISTFILE",
    "INPUTRC",
    "TERM",
    "TERMINFO",
    "PAGER",
    "MANPAGER",
    "MANOPT",
    "LESS",
    "LESSOPEN",
    "LESSCLOSE",
    "LESSKEY",
    "EDITOR",
    "VISUAL",
    "BROWSER",
    "PSQLRC",
    "PGPASSFILE",
    "PGSERVICEFILE",
    "PGSYSCONFDIR",
    "GCONV_PATH",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "RES_OPTIONS",
    "GLIBC_TUNABLES",
    "TZDIR",
    "CLASSPATH",
    "GEM_HOME",
    "GEM_PATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CURL_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
    "SSH_ASKPASS",
    "SSH_ASKPASS_REQUIRE",
    "SSH_AUTH_SOCK",
    "DISPLAY",
    "SUDO_ASKPASS",
    "PS0",
    "PROMPT",
    "RPROMPT",
    "RPS1",
    "RPS2",
    "FPATH",
    "FCEDIT",
    "KUBE_EDITOR",
    "SYSTEMD_PAGER",
    "SYSTEMD_EDITOR",
    "GOFLAGS",
    "TERMINFO_DIRS",
    "AWS_CA_BUNDLE",
    "NIX_SSL_CERT_FILE",
    "PROMPT2",
    "PROMPT3",
    "PROMPT4",
    "RPROMPT2",
    "SPROMPT",
    "GOENV",
    "GOTOOLCHAIN",
    "GOPROXY",
    "GOINSECURE",
    "SSLKEYLOGFILE",
    "CURL_HOME",
    "WGETRC",
    "EXINIT",
    "NETRC",
    "CC",
    "CXX",
    "CPP",
    "LD",
    "AR",
    "AS",
    "MAKE",
    "MAKEFILES",
    "GOROOT",
    "GOBIN",
    "GOCACHE",
    "GOMODCACHE",
    "GOPRIVATE",
    "GONOPROXY",
    "GONOSUMDB",
    "GONOSUMCHECK",
    "GOSUMDB",
    "GOEXPERIMENT",
    "GOTOOLDIR",
    "VIM",
    "VIMRUNTIME",
    "CARGO_HOME",
    "CARGO_BUILD_RUSTC",
    "CARGO_BUILD_RUSTDOC",
    "UV_PYTHON",
    "GRADLE_USER_HOME",
    "COMPOSER_HOME",
    "BUNDLE_GEMFILE",
    "MAVEN_ARGS",
];

/// Prefixes of variable families no target may set (`LD_PRELOAD`,
/// `PSQL_PAGER`, `GIT_SSH_COMMAND`, `NODE_OPTIONS`, `PERL5OPT`,
/// `LESSEDIT`, `RUSTC_WRAPPER`, `PIP_INDEX_URL`, ...): tools' settings,
/// where one can name a program to run or a place to fetch code. Families
/// whose tools take publishing credentials in the same namespace
/// (`CARGO_REGISTRY_TOKEN`, `MAVEN_PASSWORD`, `UV_PUBLISH_TOKEN`) are named
/// one by one instead, above.
const NEVER_HANDED_OVER_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "HOIST_",
    "BASH_FUNC_",
    "PSQL_",
    "GIT_",
    "MALLOC_",
    "XDG_",
    "PYTHON",
    "PERL",
    "RUBY",
    "NODE_",
    "NPM_CONFIG_",
    "JAVA_",
    "_JAVA_",
    "JDK_",
    "LC_",
    "OPENSSL_",
    "LESS",
    "NVIM_",
    "SUDO_",
    "LUA_",
    "RUSTC",
    "RUSTDOC",
    "RUSTUP_",
    "DOTNET_",
    "COMPLUS_",
    "CORECLR_",
    "PHP",
    "PIP_",
    "CONDA",
];

/// Endings of variable families no target may set, whatever tool reads
/// them: search paths (`MANPATH`, `LUA_PATH`), start-up commands
/// (`VIMINIT`), programs to run instead (`AWS_PAGER`, `GH_PAGER`,
/// `SUDO_EDITOR`, `RSYNC_RSH`, `SVN_SSH`, `KUBECTL_EXTERNAL_DIFF`,
/// `DOTNET_STARTUP_HOOKS`, `*_ASKPASS`), options and flags given to one
/// (`MAVEN_OPTS`, `RUSTFLAGS`), settings files (`PHPRC`), package indexes
/// (`UV_INDEX_URL`, `CARGO_REGISTRIES_<NAME>_INDEX`) and colours, which can
/// carry terminal escapes (`LS_COLORS`); and proxies.
const NEVER_HANDED_OVER_SUFFIXES: &[&str] = &[
    "PATH",
    "INIT",
    "RC",
    "PAGER",
    "EDITOR",
    "ASKPASS",
    "_RSH",
    "_SSH",
    "_COMMAND",
    "_CMD",
    "_WRAPPER",
    "_HOOK",
    "_HOOKS",
    "DIFF",
    "_OPTIONS",
    "_OPTS",
    "FLAGS",
    "COLORS",
    "_INDEX",
    "INDEX_URL",
    "_PROXY",
];

/// Why `name` may not be one of a credential's variables (`AccessCredential.env`),
/// or `None` when it may. A name must be a plain POSIX name, neither a
/// variable that decides what runs (`PATH`, `LD_PRELOAD`, `PROMPT_COMMAND`,
/// `PSQL_PAGER`, `NODE_OPTIONS`, `VIMINIT`, `*_PAGER`, `*PATH`, ...) nor
/// hoist's own (`HOIST_*`); proxy variables (`*_PROXY`, any case) are
/// refused too. hoistd applies it to the
/// names a policy declares, and the client to what it is handed.
pub fn handover_variable_refusal(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        return Some("is not a variable name (letters, digits and `_`, not starting with a digit)");
    }
    let upper = name.to_ascii_uppercase();
    if NEVER_HANDED_OVER.contains(&upper.as_str())
        || NEVER_HANDED_OVER_PREFIXES
            .iter()
            .any(|prefix| upper.starts_with(prefix))
        || NEVER_HANDED_OVER_SUFFIXES
            .iter()
            .any(|suffix| upper.ends_with(suffix))
    {
        return Some("decides what a command runs or trusts, or is hoist's own");
    }
    None
}

/// Part of `Role` (`GET /v1/roles`): the target a role grants access at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoleTarget {
    /// The policy's `[[targets]]` name.
    pub name: String,
    /// The target's kind: `postgres`, `webhook`, ...
    pub kind: String,
    /// For an `ssh` target: the users its certificates log in as.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{round_trip, t};

    #[test]
    fn a_credential_cannot_set_what_decides_what_runs() {
        for name in [
            "PATH",
            "LD_PRELOAD",
            "DYLD_INSERT_LIBRARIES",
            "BASH_ENV",
            "PROMPT_COMMAND",
            "PS1",
            "ZDOTDIR",
            "PSQL_PAGER",
            "PAGER",
            "GCONV_PATH",
            "NODE_OPTIONS",
            "PERL5OPT",
            "PYTHONSTARTUP",
            "GIT_SSH_COMMAND",
            "https_proxy",
            "ALL_PROXY",
            "BASH_FUNC_ls%%",
            "PS0",
            "RPROMPT",
            "OPENSSL_CONF",
            "GOFLAGS",
            "HOIST_ROLE",
            "VIMINIT",
            "EXINIT",
            "SUDO_EDITOR",
            "LESSEDIT",
            "LESSKEYIN",
            "LUA_INIT",
            "AWS_PAGER",
            "GH_PAGER",
            "KUBECTL_EXTERNAL_DIFF",
            "RSYNC_RSH",
            "SVN_SSH",
            "CVS_RSH",
            "RUSTC_WRAPPER",
            "CARGO_BUILD_RUSTC_WRAPPER",
            "DOTNET_STARTUP_HOOKS",
            "PHPRC",
            "LS_COLORS",
            "PIP_INDEX_URL",
            "MANPATH",
            "MAVEN_OPTS",
            "RUSTFLAGS",
            "CC",
            "GOPRIVATE",
            "git_askpass",
            "CARGO_HOME",
            "CARGO_REGISTRIES_MINE_INDEX",
            "UV_INDEX_URL",
            "GRADLE_USER_HOME",
            "BUNDLE_GEMFILE",
            "VIMRUNTIME",
            "path",
            "A-B",
            "1X",
            "",
            "X Y",
        ] {
            assert!(handover_variable_refusal(name).is_some(), "{name}");
        }
        for name in [
            "PGHOST",
            "PGPASSWORD",
            "BAO_TOKEN",
            "KUBECONFIG",
            "DATABASE_URL",
            "PGUSER",
            "PGDATABASE",
            "PGPORT",
            "PGSSLMODE",
            "BAO_ADDR",
            "VAULT_ADDR",
            "VAULT_TOKEN",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "ORDERS_API_KEY",
            // Publishing credentials in tools' own namespaces.
            "CARGO_REGISTRY_TOKEN",
            "POETRY_PYPI_TOKEN_PYPI",
            "UV_PUBLISH_TOKEN",
            "MAVEN_USERNAME",
            "MAVEN_PASSWORD",
            "GRADLE_PUBLISH_KEY",
            "COMPOSER_AUTH",
            "BUNDLE_RUBYGEMS__ORG",
            "VIMEO_ACCESS_TOKEN",
            "_X1",
        ] {
            assert_eq!(handover_variable_refusal(name), None, "{name}");
        }
    }

    fn access_credential() -> AccessCredential {
        AccessCredential {
            target: "db-prod-1".into(),
            kind: "postgres".into(),
            env: BTreeMap::from([
                ("PGUSER".to_string(), "hoist_alice_0123456789ab".to_string()),
                ("PGPASSWORD".to_string(), "s3cret-pw".to_string()),
            ]),
            uri: Some("postgresql://hoist_alice_0123456789ab:s3cret-pw@db:5432/app".into()),
            command: Some(
                "PGPASSWORD=s3cret-pw psql 'postgresql://hoist_alice_0123456789ab@db:5432/app'"
                    .into(),
            ),
            expires_at: t("2026-01-01T00:30:00Z"),
            certificate: None,
        }
    }

    #[test]
    fn every_type_round_trips() {
        round_trip(TargetAccess {
            target: "db-prod-1".into(),
            kind: "postgres".into(),
            state: AccessState::Failed,
            reason: Some("connection refused".into()),
            attempts: 3,
            next_attempt_at: Some(t("2026-01-01T00:00:08Z")),
            updated_at: t("2026-01-01T00:00:04Z"),
            live_until: Some(t("2026-01-01T01:00:00Z")),
        });
        round_trip(access_credential());
        round_trip(AccessCredential {
            target: "hosts".into(),
            kind: "ssh".into(),
            env: BTreeMap::new(),
            uri: None,
            command: None,
            expires_at: t("2026-01-01T00:30:00Z"),
            certificate: Some(SshCertificate {
                certificate: "ssh-ed25519-cert-v01@openssh.com AAAA hoist".into(),
                key_id: "hoist grant=g-1 holder=alice".into(),
                principals: vec!["deploy".into()],
                valid_after: t("2026-01-01T00:00:00Z"),
                valid_before: t("2026-01-01T00:30:00Z"),
                fingerprint: "SHA256:abc".into(),
            }),
        });
        round_trip(CredentialInput {
            public_key: "ssh-ed25519 AAAA alice@laptop".into(),
        });
        round_trip(RoleTarget {
            name: "db-prod-1".into(),
            kind: "postgres".into(),
            principals: Vec::new(),
        });
        round_trip(RoleTarget {
            name: "hosts".into(),
            kind: "ssh".into(),
            principals: vec!["oncall".into()],
        });
    }

    #[test]
    fn states_use_their_wire_names() {
        for state in AccessState::ALL {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(AccessState::parse(state.as_str()), Some(state));
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", access_credential());
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(shown.contains("PGPASSWORD"), "{shown}");
        assert!(shown.contains("db-prod-1"), "{shown}");
        assert!(!shown.contains("hoist_alice_0123456789ab"), "{shown}");
    }
}
