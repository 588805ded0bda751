//! SSH: OpenSSH user certificates for a grant's window, signed by a user CA
//! hoistd keeps (the broker's, or the target's own: `ca = "own"`), and the
//! key revocation list (KRL) of grants ended early. Hosts trust their
//! target's CA (`TrustedUserCAKeys`, from `GET /v1/ssh/ca?target=`) and
//! read the KRL (`RevokedKeys`, from `GET /v1/ssh/krl` or `hoistd ssh
//! krl`), so nothing is created or removed on a host: the certificate is
//! the access, and it ends with the grant by its own `valid-before`.
//!
//! Shape (as every kind): settings, access, the operations, errors; then
//! the CA and the KRL, which the broker and `hoistd ssh krl` share.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use hoist_api::{AccessCredential, GrantState, SshCertificate};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ssh_key::certificate::{Builder, CertType};
use ssh_key::private::Ed25519Keypair;
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PrivateKey, PublicKey};

use super::{GrantFacts, Journal, Managed, TargetError, TargetKind, settings};
use crate::store::{GrantQuery, Snapshot, Store, StoreError, Tx};

/// The kind's name in `[[targets]]`.
pub const KIND: &str = "ssh";
/// Under which the store keeps the CA key (store rule 11).
const CA_PURPOSE: &str = "ssh-user-ca";
/// The comment on the CA's public key line.
const CA_COMMENT: &str = "hoist-user-ca";
/// Longest public key line taken, as the API's schema says.
const MAX_KEY_CHARS: usize = 8192;
/// How far `valid-after` is set before the grant's start, for hosts whose
/// clock is behind the broker's (as Teleport backdates its certificates):
/// a certificate made at the grant's start is not refused as "not yet
/// valid" there. It lets nothing in early: no certificate exists before
/// the grant is active.
pub const VALID_AFTER_ALLOWANCE: chrono::TimeDelta = chrono::TimeDelta::minutes(1);
/// The extensions a certificate may carry, as OpenSSH names them.
const EXTENSIONS: [&str; 5] = [
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
];

// ---- settings ------------------------------------------------------------

/// A `[[targets]]` entry of kind `ssh`: which CA signs its certificates.
/// Hosts come to the broker, so nothing else is needed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    ca: Signer,
}

/// Which CA signs a target's certificates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signer {
    /// The broker's CA (`serve --ssh-ca-key`, or the store's): one target
    /// at most, since a host that trusts it takes every certificate it signs.
    #[default]
    Broker,
    /// A CA of the target's own, made on first start and kept in the store
    /// under the target's name: its hosts trust it and no other target's.
    Own,
}

/// Why a policy that has the broker's CA sign for ssh target `target` is
/// refused, the CA being bound to `bound`.
pub fn brokers_ca_bound_elsewhere(target: &str, bound: &str) -> String {
    format!(
        "ssh target `{target}` would be signed by the broker's SSH CA, which signs for ssh \
         target `{bound}`: the hosts of `{bound}` trust it, and would let in `{target}`'s \
         certificates. Give `{target}` `ca = \"own\"`, or keep the name `{bound}` for those \
         hosts"
    )
}

/// Which of `targets` is an ssh target signed by the broker's CA, if any
/// (a policy has one at most).
pub fn brokers_target(targets: &super::Targets) -> Option<&str> {
    targets
        .iter()
        .find(|t| t.kind() == KIND && !t.own_ssh_ca())
        .map(|t| t.name())
}

/// The `ca` setting's value, as written in `[[targets]]`, or `None` if the
/// setting is not one: how the policy tells the targets signed by the
/// broker's CA before it builds them.
pub fn signer_of(settings: &toml::Table) -> Option<Signer> {
    match settings.get("ca") {
        None => Some(Signer::Broker),
        Some(value) => value.clone().try_into().ok(),
    }
}

#[derive(Debug)]
pub struct Ssh {
    name: String,
    signer: Signer,
}

// ---- access ----------------------------------------------------------------

/// The addresses two `source-address` lists both allow: of each pair of
/// blocks that overlap (CIDR blocks nest or are apart), the narrower, as
/// written. An entry that is no address is kept only where both lists
/// write it alike.
fn addresses_in_both(given: &str, now: &str) -> Vec<String> {
    let block = |entry: &str| {
        entry.parse::<ipnet::IpNet>().ok().or_else(|| {
            entry
                .parse::<std::net::IpAddr>()
                .ok()
                .map(ipnet::IpNet::from)
        })
    };
    let mut kept: Vec<String> = Vec::new();
    for g in given.split(',') {
        for n in now.split(',') {
            let narrower = match (block(g), block(n)) {
                (Some(gb), Some(nb)) if gb.contains(&nb) => Some(n),
                (Some(gb), Some(nb)) if nb.contains(&gb) => Some(g),
                (None, None) if g == n => Some(g),
                _ => None,
            };
            if let Some(entry) = narrower
                && !kept.iter().any(|k| k == entry)
            {
                kept.push(entry.to_string());
            }
        }
    }
    kept
}

/// What a role grants at an ssh target: its `[roles.access]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    /// The users the certificate may log in as.
    pub principals: Vec<String>,
    /// The `force-command` critical option: the only command sshd runs.
    #[serde(default)]
    pub force_command: Option<String>,
    /// The `source-address` critical option: CIDR list the key may be used from.
    #[serde(default)]
    pub source_address: Option<String>,
    /// Extensions granted; only a pty unless the role says more (least
    /// privilege: no forwarding of ports, agents or X11 by default).
    #[serde(default = "default_extensions")]
    pub extensions: Vec<String>,
}

fn default_extensions() -> Vec<String> {
    vec!["permit-pty".into()]
}

impl Access {
    /// What a certificate made with this access may do that one made with
    /// `narrowed` may not.
    fn lost(&self, narrowed: &Access) -> Vec<String> {
        let mut lost: Vec<String> = self
            .principals
            .iter()
            .filter(|p| !narrowed.principals.contains(p))
            .map(|p| format!("principal {p}"))
            .collect();
        lost.extend(
            self.extensions
                .iter()
                .filter(|e| !narrowed.extensions.contains(e))
                .map(|e| format!("extension {e}")),
        );
        if self.source_address != narrowed.source_address
            && let Some(now) = &narrowed.source_address
        {
            lost.push(format!("use from outside {now}"));
        }
        if self.force_command != narrowed.force_command {
            lost.push("sessions without its forced command".into());
        }
        lost
    }

    /// This access, as given at activation, narrowed to the role's access
    /// `now`: the principals and extensions in both, the `source-address`
    /// blocks both allow, and a `force-command` either sets (two different
    /// ones give nothing: neither is within the other).
    fn narrowed(&self, now: &Access) -> Result<Access, String> {
        let both = |given: &[String], now: &[String]| -> Vec<String> {
            given.iter().filter(|x| now.contains(x)).cloned().collect()
        };
        let principals = both(&self.principals, &now.principals);
        if principals.is_empty() {
            return Err(format!(
                "no longer names any of the principals it gave ({})",
                self.principals.join(", ")
            ));
        }
        let source_address = match (&self.source_address, &now.source_address) {
            (Some(given), Some(now)) if given != now => {
                let kept = addresses_in_both(given, now);
                if kept.is_empty() {
                    return Err(format!(
                        "no longer lets it be used from any of the addresses it gave ({given})"
                    ));
                }
                Some(kept.join(","))
            }
            (given, now) => now.clone().or_else(|| given.clone()),
        };
        // One command or another: neither is within the other, so a role
        // that now forces another command gives none.
        let force_command = match (&self.force_command, &now.force_command) {
            (Some(given), Some(now)) if given != now => {
                return Err(format!(
                    "now forces another command than the one it gave ({given:?})"
                ));
            }
            (given, now) => now.clone().or_else(|| given.clone()),
        };
        Ok(Access {
            principals,
            force_command,
            source_address,
            extensions: both(&self.extensions, &now.extensions),
        })
    }

    fn check(&self) -> Result<(), String> {
        if self.principals.is_empty() {
            return Err("principals must name at least one user".into());
        }
        for principal in &self.principals {
            if principal.is_empty()
                || principal.len() > 256
                || principal
                    .chars()
                    .any(|c| c == ',' || c.is_whitespace() || c.is_control())
            {
                return Err(format!(
                    "principal {principal:?} is not a user name (no commas, spaces or controls)"
                ));
            }
        }
        for extension in &self.extensions {
            if !EXTENSIONS.contains(&extension.as_str()) {
                return Err(format!(
                    "extension {extension:?} is not one OpenSSH knows: {}",
                    EXTENSIONS.join(", ")
                ));
            }
        }
        if let Some(command) = &self.force_command
            && (command.trim().is_empty() || command.chars().any(char::is_control))
        {
            return Err("force_command must be a command line without controls".into());
        }
        if let Some(sources) = &self.source_address
            && (sources.is_empty()
                || !sources
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || ".:/,".contains(c)))
        {
            return Err(format!(
                "source_address {sources:?} must be comma-separated addresses or CIDR blocks"
            ));
        }
        Ok(())
    }
}

// ---- the holder's key --------------------------------------------------

/// A public key the holder sent for a certificate: one OpenSSH line,
/// checked, with its fingerprint for the audit log (never the key itself).
#[derive(Clone)]
pub struct HolderKey {
    key: PublicKey,
    pub fingerprint: String,
}

impl fmt::Debug for HolderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HolderKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The smallest RSA modulus certified, in bits.
const MIN_RSA_BITS: usize = 2048;

impl HolderKey {
    /// Parses one `<algorithm> <base64> [comment]` line; the error names
    /// what is wrong, never echoes the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.chars().count() > MAX_KEY_CHARS {
            return Err(format!(
                "public_key is longer than {MAX_KEY_CHARS} characters; no OpenSSH public key is"
            ));
        }
        let line = text.trim();
        if line.lines().count() != 1 {
            return Err("public_key must be one OpenSSH public key line".into());
        }
        let key = PublicKey::from_openssh(line).map_err(|_| {
            "public_key is not an OpenSSH public key (e.g. the line in ~/.ssh/id_ed25519.pub)"
                .to_string()
        })?;
        match key.key_data() {
            // ssh-key checks RSA's size only when a key is converted for
            // the rsa crate, which certifying does not do.
            KeyData::Rsa(rsa) => {
                let bits = rsa.n.as_positive_bytes().map_or(0, |n| {
                    n.len() * 8 - n.first().map_or(0, |top| top.leading_zeros() as usize)
                });
                if bits < MIN_RSA_BITS {
                    return Err(format!(
                        "public_key is a {bits}-bit RSA key; RSA keys need {MIN_RSA_BITS} bits \
                         or more (or use Ed25519)"
                    ));
                }
            }
            KeyData::Ed25519(_)
            | KeyData::Ecdsa(_)
            | KeyData::SkEd25519(_)
            | KeyData::SkEcdsaSha2NistP256(_) => {}
            _ => {
                return Err(format!(
                    "public_key is a {} key; use Ed25519, ECDSA or RSA",
                    key.algorithm()
                ));
            }
        }
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        Ok(HolderKey { key, fingerprint })
    }
}

// ---- the operations ----------------------------------------------------

impl Ssh {
    /// Builds the target from its `[[targets]]` settings.
    pub fn configure(name: &str, table: toml::Table) -> Result<Arc<dyn TargetKind>, String> {
        let settings: Settings = settings(name, table)?;
        Ok(Arc::new(Ssh {
            name: name.to_string(),
            signer: settings.ca,
        }))
    }
}

#[async_trait::async_trait]
impl TargetKind for Ssh {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn own_ssh_ca(&self) -> bool {
        self.signer == Signer::Own
    }

    fn access(&self, table: toml::Table) -> Result<serde_json::Value, String> {
        let access: Access = toml::Value::Table(table)
            .try_into()
            .map_err(|err: toml::de::Error| err.message().trim().to_string())?;
        access.check()?;
        serde_json::to_value(access).map_err(|err| err.to_string())
    }

    fn narrow(
        &self,
        given: &serde_json::Value,
        now: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        super::narrow_as(given, now, Access::narrowed)
    }

    fn taken_back(
        &self,
        given: &serde_json::Value,
        narrowed: &serde_json::Value,
    ) -> Option<String> {
        super::taken_back_as(given, narrowed, Access::lost)
    }

    async fn validate(&self, _access: &serde_json::Value) -> Result<(), TargetError> {
        Ok(())
    }

    /// Nothing to create: hosts trust the CA, so the grant is usable at once.
    async fn provision(&self, _grant: &GrantFacts, _journal: &Journal) -> Result<(), TargetError> {
        Ok(())
    }

    /// Nothing to remove: from the grant's early end on, its serial (every
    /// certificate of the grant carries the same one) is in the KRL until
    /// its certificates would have expired anyway.
    async fn deprovision(
        &self,
        _grant: &GrantFacts,
        _journal: &Journal,
    ) -> Result<(), TargetError> {
        Ok(())
    }

    async fn inspect(&self, _grant: &GrantFacts, _journal: &Journal) -> Result<bool, TargetError> {
        Ok(true)
    }

    async fn managed(&self, _journal: &Journal) -> Result<Option<Vec<Managed>>, TargetError> {
        Ok(None)
    }

    async fn remove(&self, _found: &Managed, _journal: &Journal) -> Result<(), TargetError> {
        Ok(())
    }

    /// A certificate for the key the holder sent; without one, nothing (the
    /// signed credential alone).
    async fn credential(
        &self,
        grant: &GrantFacts,
        journal: &Journal,
        key: Option<&HolderKey>,
    ) -> Result<Option<AccessCredential>, TargetError> {
        let Some(key) = key else {
            return Ok(None);
        };
        let access: Access = serde_json::from_value(grant.access.clone())
            .map_err(|err| TargetError::refused(&self.name, format!("role access: {err}")))?;
        let ca = journal.ssh_ca_of(&self.name, self.signer).ok_or_else(|| {
            TargetError::refused(&self.name, "its own CA is not loaded; reload the policy")
        })?;
        let certificate = ca
            .certify(grant, &access, key)
            .map_err(|err| TargetError::refused(&self.name, err))?;
        Ok(Some(AccessCredential {
            target: self.name.clone(),
            kind: KIND.into(),
            env: Default::default(),
            uri: None,
            command: None,
            expires_at: certificate.valid_before,
            certificate: Some(certificate),
        }))
    }
}

// ---- the CA ----------------------------------------------------------------

/// The key id of a grant's certificates: what sshd logs, and what the KRL
/// revokes, computed again from the grant alone.
pub fn key_id(grant_id: &str, holder: &str) -> String {
    format!("hoist grant={grant_id} holder={holder}")
}

/// A certificate serial derived from the grant (the first 8 bytes of the
/// SHA-256 of its id), so a host's log ties a login to a grant either way.
pub fn serial(grant_id: &str) -> u64 {
    let digest = Sha256::digest(grant_id.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored SSH CA key is unusable: {0}")]
    BadKey(String),
}

/// The SSH user certificate authority: an Ed25519 key kept like the
/// credential signing key (in the store, or a key file never stored).
pub struct Authority {
    key: PrivateKey,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// Under which the store keeps the CA key of ssh target `target`, if it
/// has its own: its name, so a renamed target has another CA.
fn own_purpose(target: &str) -> String {
    format!("{CA_PURPOSE}:{target}")
}

impl Authority {
    /// The store's CA key, if one was made; never makes one.
    pub fn load(store: &dyn Store) -> Result<Option<Self>, AuthorityError> {
        Self::load_as(store, CA_PURPOSE)
    }

    /// [`Authority::load`], as `snapshot` reads it.
    pub fn load_from(snapshot: &dyn Snapshot) -> Result<Option<Self>, AuthorityError> {
        match snapshot.broker_key(CA_PURPOSE)? {
            Some((_, der)) => Self::from_der(&der).map(Some),
            None => Ok(None),
        }
    }

    /// The CA key of ssh target `target`, if it has one of its own and
    /// `serve` has made it; never makes one.
    pub fn load_target(store: &dyn Store, target: &str) -> Result<Option<Self>, AuthorityError> {
        Ok(Self::load_as(store, &own_purpose(target))?.map(|ca| ca.named(target)))
    }

    fn load_as(store: &dyn Store, purpose: &str) -> Result<Option<Self>, AuthorityError> {
        match store.read()?.broker_key(purpose)? {
            Some((_, der)) => Self::from_der(&der).map(Some),
            None => Ok(None),
        }
    }

    /// The store's CA key, made and stored on first start.
    pub fn load_or_create(store: &dyn Store) -> Result<Self, AuthorityError> {
        Self::load_or_create_as(store, CA_PURPOSE)
    }

    /// The CA key of ssh target `target`, made and stored the first time a
    /// policy names the target with `ca = "own"` (a KRL revokes under every
    /// one kept: [`own_authorities`]).
    pub fn load_or_create_target(store: &dyn Store, target: &str) -> Result<Self, AuthorityError> {
        Ok(Self::load_or_create_as(store, &own_purpose(target))?.named(target))
    }

    /// The same key, its public line's comment naming target `target`, so
    /// an operator tells the CAs apart.
    fn named(mut self, target: &str) -> Self {
        self.key.set_comment(format!("{CA_COMMENT} {target}"));
        self
    }

    fn load_or_create_as(store: &dyn Store, purpose: &str) -> Result<Self, AuthorityError> {
        let mut tx = store.transaction()?;
        if let Some((_, der)) = tx.broker_key(purpose)? {
            return Self::from_der(&der);
        }
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let der = key
            .to_pkcs8_der()
            .map_err(|err| AuthorityError::BadKey(err.to_string()))?;
        let kid = crate::keys::key_id(&key.verifying_key());
        match tx.insert_broker_key(purpose, &kid, der.as_bytes(), crate::clock::now()) {
            Ok(()) => {
                tx.commit()?;
                Ok(Self::from_key(&key))
            }
            // Another broker on the same database made it first: use theirs.
            Err(StoreError::Conflict(_)) => {
                drop(tx);
                let tx = store.read()?;
                match tx.broker_key(purpose)? {
                    Some((_, der)) => Self::from_der(&der),
                    None => Err(AuthorityError::BadKey("vanished after a conflict".into())),
                }
            }
            Err(err) => Err(err.into()),
        }
    }

    fn from_der(der: &[u8]) -> Result<Self, AuthorityError> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_der(der)
            .map_err(|err| AuthorityError::BadKey(err.to_string()))?;
        Ok(Self::from_key(&key))
    }

    /// A CA with a key kept outside the store (`hoistd serve --ssh-ca-key`).
    pub fn from_key(key: &ed25519_dalek::SigningKey) -> Self {
        let mut key = PrivateKey::from(Ed25519Keypair::from(key));
        key.set_comment(CA_COMMENT);
        Authority { key }
    }

    /// The CA's public key as one line, for `TrustedUserCAKeys`.
    pub fn public_key(&self) -> String {
        self.key.public_key().to_openssh().unwrap_or_default()
    }

    /// Records in the store that `hoistd serve` signs with this CA, so that
    /// a KRL written from the database alone (`hoistd ssh krl`) revokes
    /// under it too, whichever key the database itself keeps.
    pub fn record(&self, store: &dyn Store) -> Result<(), StoreError> {
        let mut tx = store.transaction()?;
        tx.note_ssh_authority(&bare(self.key.public_key()), crate::clock::now())?;
        tx.commit()
    }

    /// Binds this CA to ssh target `target`, unless a policy gave it
    /// another before, and returns the target it signs for: the first one
    /// given it, for good, since that target's hosts trust the CA for
    /// every certificate it signs.
    pub fn bind(&self, store: &dyn Store, target: &str) -> Result<String, StoreError> {
        let mut tx = store.transaction()?;
        let bound =
            tx.bind_ssh_authority(&bare(self.key.public_key()), target, crate::clock::now())?;
        tx.commit()?;
        Ok(bound)
    }

    /// The ssh target this CA is bound to ([`Authority::bind`]), if any,
    /// as `snapshot` reads it.
    pub fn bound_target(&self, snapshot: &dyn Snapshot) -> Result<Option<String>, StoreError> {
        snapshot.ssh_authority_target(&bare(self.key.public_key()))
    }

    /// A user certificate for `key`, bounded by the grant: its principals,
    /// options and extensions from the role, `valid-after` and
    /// `valid-before` the grant's start (less [`VALID_AFTER_ALLOWANCE`])
    /// and end (to the second below, so never beyond), and a key id and
    /// serial naming the grant.
    pub fn certify(
        &self,
        grant: &GrantFacts,
        access: &Access,
        key: &HolderKey,
    ) -> Result<SshCertificate, String> {
        let valid_after = (grant.starts_at - VALID_AFTER_ALLOWANCE).timestamp().max(0) as u64;
        let valid_before = grant.expires_at.timestamp().max(0) as u64;
        let failed = |err: ssh_key::Error| format!("cannot issue the certificate: {err}");
        let mut builder = Builder::new_with_random_nonce(
            &mut rand::rngs::OsRng,
            key.key.key_data().clone(),
            valid_after,
            valid_before,
        )
        .map_err(failed)?;
        let key_id = key_id(&grant.id, &grant.holder);
        builder
            .serial(serial(&grant.id))
            .and_then(|b| b.key_id(key_id.clone()))
            .and_then(|b| b.cert_type(CertType::User))
            .and_then(|b| b.comment(format!("hoist grant {}", grant.id)))
            .map_err(failed)?;
        for principal in &access.principals {
            builder.valid_principal(principal.clone()).map_err(failed)?;
        }
        if let Some(command) = &access.force_command {
            builder
                .critical_option("force-command", command.clone())
                .map_err(failed)?;
        }
        if let Some(sources) = &access.source_address {
            builder
                .critical_option("source-address", sources.clone())
                .map_err(failed)?;
        }
        for extension in &access.extensions {
            builder
                .extension(extension.clone(), String::new())
                .map_err(failed)?;
        }
        let certificate = builder.sign(&self.key).map_err(failed)?;
        let text = certificate.to_openssh().map_err(failed)?;
        let at = |secs: u64| DateTime::from_timestamp(secs as i64, 0).unwrap_or_default();
        Ok(SshCertificate {
            certificate: text,
            key_id,
            principals: access.principals.clone(),
            valid_after: at(valid_after),
            valid_before: at(valid_before),
            fingerprint: key.fingerprint.clone(),
        })
    }

    /// This CA's public key.
    pub fn public(&self) -> PublicKey {
        self.key.public_key().clone()
    }
}

/// The CAs certificates are signed with: the broker's, and those of the
/// ssh targets that have their own, by target name.
pub struct Authorities {
    broker: Arc<Authority>,
    own: HashMap<String, Arc<Authority>>,
}

impl Authorities {
    /// The broker's CA, and no target's own yet.
    pub fn new(broker: Arc<Authority>) -> Self {
        Authorities {
            broker,
            own: HashMap::new(),
        }
    }

    /// The same, and `ca` as the own CA of target `target`.
    pub fn with(&self, target: &str, ca: Arc<Authority>) -> Self {
        let mut own = self.own.clone();
        own.insert(target.to_string(), ca);
        Authorities {
            broker: Arc::clone(&self.broker),
            own,
        }
    }

    pub fn broker(&self) -> &Authority {
        &self.broker
    }

    /// Target `target`'s own CA, if it is loaded.
    pub fn own(&self, target: &str) -> Option<&Authority> {
        self.own.get(target).map(Arc::as_ref)
    }

    /// The CA that signs for target `target` as `signer` says: never the
    /// broker's for a target that has its own, even one not loaded.
    pub fn of(&self, target: &str, signer: Signer) -> Option<&Authority> {
        match signer {
            Signer::Broker => Some(&self.broker),
            Signer::Own => self.own(target),
        }
    }
}

/// A public key as the line the store keeps: no comment, so one key is one
/// line whatever it was called.
fn bare(key: &PublicKey) -> String {
    PublicKey::new(key.key_data().clone(), "")
        .to_openssh()
        .unwrap_or_default()
}

/// Every SSH CA `hoistd serve` has recorded signing with, the last seen
/// first. One that does not read (written by a newer build, or damaged) is
/// left out, loudly, rather than fail the list: the KRL built from it
/// would otherwise stop changing, and every revocation after stop reaching
/// hosts.
pub fn recorded_authorities(tx: &dyn Tx) -> Result<Vec<PublicKey>, AuthorityError> {
    Ok(tx
        .ssh_authorities()?
        .iter()
        .filter_map(|line| match PublicKey::from_openssh(line) {
            Ok(key) => Some(PublicKey::new(key.key_data().clone(), CA_COMMENT)),
            Err(err) => {
                tracing::error!(
                    error = %err,
                    "a recorded SSH CA public key does not read; the KRL lists nothing \
                     under it until it is put right"
                );
                None
            }
        })
        .collect())
}

/// The public keys of every own CA of an ssh target the store keeps,
/// whether or not the policy in force still names the target: its
/// certificates may still be valid. One that does not read is left out,
/// loudly, as in [`recorded_authorities`].
pub fn own_authorities(tx: &dyn Tx) -> Result<Vec<PublicKey>, AuthorityError> {
    Ok(tx
        .broker_keys_under(&own_purpose(""))?
        .iter()
        .filter_map(|(purpose, der)| match Authority::from_der(der) {
            Ok(ca) => Some(ca.public()),
            Err(err) => {
                tracing::error!(
                    key = %purpose, error = %err,
                    "an ssh target's own CA key does not read; the KRL lists nothing under \
                     it until it is put right"
                );
                None
            }
        })
        .collect())
}

/// The KRL (OpenSSH's PROTOCOL.krl, format 1) revoking the certificates
/// with these serials under each of these CAs (a certificate's serial is
/// looked up under the CA that signed it), unsigned: hosts fetch it over
/// TLS from the broker they trust for the CA itself. By serial, not by key
/// id, so the public list names no grant and no person.
pub fn krl(cas: &[PublicKey], serials: &[u64], now: DateTime<Utc>) -> Vec<u8> {
    const MAGIC: u64 = 0x5353_484b_524c_0a00;
    const FORMAT_VERSION: u32 = 1;
    const SECTION_CERTIFICATES: u8 = 1;
    const CERT_SECTION_SERIAL_LIST: u8 = 0x20;
    let generated = now.timestamp().max(0) as u64;
    let mut krl = Vec::new();
    krl.extend_from_slice(&MAGIC.to_be_bytes());
    krl.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    // The version only has to grow: the moment it was made, in ms.
    krl.extend_from_slice(&(now.timestamp_millis().max(0) as u64).to_be_bytes());
    krl.extend_from_slice(&generated.to_be_bytes());
    krl.extend_from_slice(&0u64.to_be_bytes());
    put_string(&mut krl, b"");
    put_string(&mut krl, b"hoist: certificates of grants ended early");
    // OpenSSH refuses serial 0 in a list (it means "no serial").
    let mut serials: Vec<u64> = serials.iter().copied().filter(|s| *s != 0).collect();
    if serials.is_empty() {
        return krl;
    }
    serials.sort_unstable();
    serials.dedup();
    let list: Vec<u8> = serials.iter().flat_map(|s| s.to_be_bytes()).collect();
    let mut seen = Vec::new();
    for ca in cas {
        if seen.contains(ca.key_data()) {
            continue;
        }
        seen.push(ca.key_data().clone());
        let mut certificates = Vec::new();
        put_string(&mut certificates, &ca.to_bytes().unwrap_or_default());
        put_string(&mut certificates, b"");
        certificates.push(CERT_SECTION_SERIAL_LIST);
        put_string(&mut certificates, &list);
        krl.push(SECTION_CERTIFICATES);
        put_string(&mut krl, &certificates);
    }
    krl
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// How long past a revoked grant's end its serial stays in the KRL: a host
/// whose clock is behind the broker's still takes the certificate as valid
/// for that long.
const KRL_CLOCK_MARGIN: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// The certificate serials to revoke at `now`: grants at an ssh target
/// that were revoked before their end, and whose end (their certificates'
/// `valid-before`) is still to come, or came less than
/// [`KRL_CLOCK_MARGIN`] ago. Older ones expire by themselves, so the KRL
/// stays as short as the grants revoked in the last max-duration.
pub fn revoked_serials(tx: &dyn Tx, now: DateTime<Utc>) -> Result<Vec<u64>, StoreError> {
    let revoked = tx.grants(&GrantQuery {
        states: vec![GrantState::Revoked],
        ends_after: Some(now - KRL_CLOCK_MARGIN),
        ..GrantQuery::default()
    })?;
    let mut ids: Vec<u64> = revoked
        .into_iter()
        .filter(|grant| grant.access.as_ref().is_some_and(|a| a.kind == KIND))
        .map(|grant| serial(&grant.id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn access(principals: &[&str], sources: Option<&str>, command: Option<&str>) -> Access {
        Access {
            principals: principals.iter().map(|p| p.to_string()).collect(),
            force_command: command.map(str::to_string),
            source_address: sources.map(str::to_string),
            extensions: default_extensions(),
        }
    }

    /// Narrowed access keeps only what both the grant and the role in force
    /// allow, and fails when nothing of a list is left.
    #[test]
    fn narrowed_access_is_never_more_than_either() {
        let given = access(&["deploy", "ops"], Some("10.0.0.0/8,192.168.1.0/24"), None);
        let now = access(
            &["ops", "root"],
            Some("192.168.1.0/24,172.16.0.0/12"),
            Some("uptime"),
        );
        let narrowed = given.narrowed(&now).unwrap();
        assert_eq!(narrowed.principals, ["ops"]);
        assert_eq!(narrowed.source_address.as_deref(), Some("192.168.1.0/24"));
        assert_eq!(narrowed.force_command.as_deref(), Some("uptime"));
        // A limit only one side has is kept.
        let narrowed = access(&["ops"], Some("10.0.0.1"), Some("id"))
            .narrowed(&access(&["ops"], None, None))
            .unwrap();
        assert_eq!(narrowed.source_address.as_deref(), Some("10.0.0.1"));
        assert_eq!(narrowed.force_command.as_deref(), Some("id"));
        let none_left = given.narrowed(&access(&["root"], None, None)).unwrap_err();
        assert!(none_left.contains("deploy, ops"), "{none_left}");
        let nowhere = given
            .narrowed(&access(&["ops"], Some("172.16.0.0/12"), None))
            .unwrap_err();
        assert!(nowhere.contains("addresses"), "{nowhere}");
        // Blocks, not text: a block within one given is kept, written as
        // the role writes it; a host is its /32.
        let within = given
            .narrowed(&access(&["ops"], Some("10.1.0.0/16,192.168.1.7"), None))
            .unwrap();
        assert_eq!(
            within.source_address.as_deref(),
            Some("10.1.0.0/16,192.168.1.7")
        );
        let host = access(&["ops"], Some("10.0.0.1"), None)
            .narrowed(&access(&["ops"], Some("10.0.0.1/32"), None))
            .unwrap();
        assert_eq!(host.source_address.as_deref(), Some("10.0.0.1/32"));
        // Another forced command is neither narrower nor wider: refused.
        let other = access(&["ops"], None, Some("systemctl status app"))
            .narrowed(&access(&["ops"], None, Some("/bin/bash")))
            .unwrap_err();
        assert!(other.contains("another command"), "{other}");
    }

    /// A revoked grant's serial stays listed for an hour past its end, for
    /// hosts whose clock is behind, and not longer.
    #[cfg(feature = "testing")]
    #[test]
    fn a_revoked_serial_stays_listed_an_hour_past_its_end() {
        use crate::store::conformance::{at, bare_request, grant, insert_requests};
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(&dir.path().join("hoistd.db")).unwrap();
        let requests: Vec<_> = ["req_a", "req_b", "req_c"]
            .iter()
            .map(|id| bare_request(id, "alice", "shell", 1))
            .collect();
        insert_requests(&store, &requests);
        let now = at(10_000_000);
        let ended = |id: &str, request: &str, ago_mins: i64| {
            let mut g = grant(id, request, "alice", 1);
            g.expires_at = now - chrono::TimeDelta::minutes(ago_mins);
            g.state = GrantState::Revoked;
            g.ended_at = Some(at(2));
            g.access = Some(hoist_api::TargetAccess {
                target: "hosts".into(),
                kind: KIND.into(),
                state: hoist_api::AccessState::Live,
                reason: None,
                attempts: 0,
                next_attempt_at: None,
                updated_at: at(2),
                live_until: None,
            });
            g
        };
        let mut tx = store.transaction().unwrap();
        for g in [
            ended("gr_soon", "req_a", -5),
            ended("gr_just", "req_b", 50),
            ended("gr_long", "req_c", 70),
        ] {
            tx.insert_grant(&g).unwrap();
        }
        tx.commit().unwrap();
        let listed = revoked_serials(store.read().unwrap().as_ref(), now).unwrap();
        let mut wanted = vec![serial("gr_soon"), serial("gr_just")];
        wanted.sort_unstable();
        assert_eq!(listed, wanted);
    }

    #[test]
    fn a_role_access_is_checked_at_load() {
        let target = Ssh {
            name: "hosts".into(),
            signer: Signer::Broker,
        };
        let table = |text: &str| -> toml::Table { toml::from_str(text).unwrap() };
        let access = target.access(table("principals = [\"deploy\"]")).unwrap();
        assert_eq!(access["extensions"], serde_json::json!(["permit-pty"]));
        for (bad, says) in [
            ("principals = []", "at least one"),
            ("principals = [\"a,b\"]", "not a user name"),
            (
                "principals = [\"a\"]\nextensions = [\"no-port-forwarding\"]",
                "not one OpenSSH knows",
            ),
            (
                "principals = [\"a\"]\nsource_address = \"10.0.0.0/8; rm\"",
                "CIDR",
            ),
            ("principals = [\"a\"]\nshell = \"x\"", "unknown field"),
        ] {
            let err = target.access(table(bad)).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn a_holder_key_is_one_openssh_line() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let public = PrivateKey::from(Ed25519Keypair::from(&key))
            .public_key()
            .to_openssh()
            .unwrap();
        let parsed = HolderKey::parse(&format!("{public} alice@laptop\n")).unwrap();
        assert!(parsed.fingerprint.starts_with("SHA256:"));
        assert!(!format!("{parsed:?}").contains(&public[12..40]));
        for bad in [
            "",
            "ssh-ed25519",
            "not a key",
            &format!("{public}\n{public}"),
        ] {
            let err = HolderKey::parse(bad).unwrap_err();
            assert!(err.contains("public_key"), "{err}");
            assert!(bad.is_empty() || !err.contains(bad), "never echoed: {err}");
        }
    }

    /// An RSA key under 2048 bits is refused, naming its size; one of
    /// 2048 is taken.
    #[test]
    fn rsa_keys_under_2048_bits_are_refused() {
        let rsa = |bytes: usize| {
            let data = KeyData::Rsa(ssh_key::public::RsaPublicKey {
                e: ssh_key::Mpint::from_positive_bytes(&[1, 0, 1]).unwrap(),
                n: ssh_key::Mpint::from_positive_bytes(&vec![0xc5; bytes]).unwrap(),
            });
            ssh_key::PublicKey::new(data, "").to_openssh().unwrap()
        };
        let err = HolderKey::parse(&rsa(128)).unwrap_err();
        assert!(err.contains("1024-bit RSA key"), "{err}");
        HolderKey::parse(&rsa(256)).unwrap();
    }

    /// A target with its own CA is never signed for by the broker's, even
    /// while its own is not loaded.
    #[test]
    fn a_target_with_its_own_ca_never_borrows_the_brokers() {
        let key = |byte| {
            Arc::new(Authority::from_key(&ed25519_dalek::SigningKey::from_bytes(
                &[byte; 32],
            )))
        };
        let cas = Authorities::new(key(1));
        assert!(cas.of("lab", Signer::Own).is_none());
        let broker = cas.of("hosts", Signer::Broker).unwrap().public();
        let cas = cas.with("lab", key(2));
        let lab = cas.of("lab", Signer::Own).unwrap().public();
        assert_ne!(lab, broker);
        assert!(cas.of("dev", Signer::Own).is_none());
        assert_eq!(cas.of("lab", Signer::Broker).unwrap().public(), broker);
    }

    #[test]
    fn serials_and_key_ids_name_the_grant() {
        assert_eq!(serial("g-1"), serial("g-1"));
        assert_ne!(serial("g-1"), serial("g-2"));
        assert_eq!(key_id("g-1", "alice"), "hoist grant=g-1 holder=alice");
    }
}
