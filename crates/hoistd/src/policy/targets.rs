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
        let built =
            target::configure(&name, &kind, settings).map_err(|why| source.invalid(offset, why))?;
        if !targets.insert(built) {
            return Err(source.invalid(offset, format!("target `{name}` is defined twice")));
        }
    }
    Ok(targets)
}
