//! The policy's `[[targets]]`: the systems grants reach (a PostgreSQL
//! server, an operator's webhook), each built by its kind from its settings.

use toml::Spanned;

use super::{PolicyError, Source, valid_name};
use crate::target::{self, Targets};

/// Builds each target by its kind. Secrets come from the environment or a
/// file the settings name; a secret written inline is refused.
pub(super) fn targets(
    source: &Source<'_>,
    raw: Vec<Spanned<toml::Table>>,
) -> Result<Targets, PolicyError> {
    let mut targets = Targets::default();
    // Each sign-in token's audience, with the target and system it is for.
    let mut audiences: Vec<(String, String, String)> = Vec::new();
    let mut ssh: Option<String> = None;
    for table in raw {
        let offset = table.span().start;
        let mut settings = table.into_inner();
        let mut text = |key: &str| match settings.remove(key) {
            Some(toml::Value::String(value)) => Ok(value),
            Some(_) => Err(source.invalid(offset, format!("target `{key}` must be a string"))),
            None => Err(source.invalid(offset, format!("a [[targets]] entry needs `{key}`"))),
        };
        let name = text("name")?;
        let kind = text("kind")?;
        if !valid_name(&name) {
            return Err(source.invalid(
                offset,
                format!(
                    "target name `{name}` may hold only letters, digits, `.`, `_`, `-` and `@`"
                ),
            ));
        }
        for inline in ["password", "secret", "token"] {
            if settings.contains_key(inline) {
                return Err(source.invalid(
                    offset,
                    format!(
                        "target `{name}` writes its {inline} inline; put it in an environment \
                         variable ({inline}_env) or a file ({inline}_file)"
                    ),
                ));
            }
        }
        // Every kind's: the systems this target was known as before.
        let formerly = match settings.remove("formerly") {
            None => Vec::new(),
            Some(toml::Value::Array(values)) => values
                .into_iter()
                .map(|value| match value {
                    toml::Value::String(system) if !system.trim().is_empty() => Ok(system),
                    _ => Err(source.invalid(
                        offset,
                        format!(
                            "target `{name}`: `formerly` lists systems as hoistd names them \
                             (strings, such as \"postgres db1.internal:5432\")"
                        ),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(source.invalid(
                    offset,
                    format!("target `{name}`: `formerly` must be an array of strings"),
                ));
            }
        };
        // What hoistd calls a system starts with its kind. Named by its
        // place, not quoted: a URL or connection string put there by
        // mistake may hold a password.
        if let Some(place) = formerly
            .iter()
            .position(|system| *system != kind && !system.starts_with(&format!("{kind} ")))
        {
            return Err(source.invalid(
                offset,
                format!(
                    "target `{name}`: `formerly` entry {} is not a {kind} system as hoistd names \
                     it (\"{kind} …\", quoted in a refused reload or the start-up log), nor a URL \
                     or connection string; a target that changes kind is another target",
                    place + 1
                ),
            ));
        }
        // A host that trusts a CA lets in every certificate it signs, so
        // the broker's CA signs for one ssh target at most: a second signed
        // by it would let its grants in at the first's hosts, past the
        // first's approvals. Any other has a CA of its own.
        if kind == "ssh" && target::ssh::signer_of(&settings) == Some(target::ssh::Signer::Broker) {
            if let Some(first) = &ssh {
                return Err(source.invalid(
                    offset,
                    format!(
                        "target `{name}` is a second ssh target signed by the broker's SSH CA, \
                         as `{first}` is: a host that trusts that CA for `{first}` would let in \
                         a certificate issued for `{name}` too; give `{name}` a CA of its own \
                         (ca = \"own\") and its hosts that CA alone"
                    ),
                ));
            }
            ssh = Some(name.clone());
        }
        let built =
            target::configure(&name, &kind, settings).map_err(|why| source.invalid(offset, why))?;
        // A token hoistd signs to sign in at one system would sign it in at
        // another that takes the same audience: the first could replay it.
        if let Some(audience) = built.sign_in_audience() {
            let system = built.system();
            if let Some((other, _, _)) = audiences
                .iter()
                .find(|(_, heard, at)| heard == audience && *at != system)
            {
                return Err(source.invalid(
                    offset,
                    format!(
                        "target `{name}` signs in with audience \"{audience}\", as target \
                         `{other}` does at another system: either could then sign in as hoistd \
                         at the other with the token it was sent; give each system its own \
                         audience (and its JWT role `bound_audiences`)"
                    ),
                ));
            }
            audiences.push((name.clone(), audience.to_string(), system));
        }
        if !targets.insert(built) {
            return Err(source.invalid(offset, format!("target `{name}` is defined twice")));
        }
        targets.set_formerly(&name, formerly);
    }
    Ok(targets)
}
