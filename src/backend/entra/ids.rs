//! hoist's ids for Entra objects. Directory roles and PIM for Groups live in
//! different Graph collections, so every id says which one it came from, and
//! parses back to exactly the Graph identifiers it was made of.
//!
//! - roles: `dir:{roleDefinitionId}` (tenant-wide), `dir:{roleDefinitionId}@{directoryScopeId}`
//!   (e.g. an administrative unit), `grp:{groupId}:member`, `grp:{groupId}:owner`;
//! - requests and grants: `dir:{id}` or `grp:{id}`, the schedule request's or
//!   the active instance's own id.

use std::fmt;

/// Which PIM surface an object belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Surface {
    /// Entra directory roles (`roleManagement/directory`).
    Directory,
    /// PIM for Groups (`identityGovernance/privilegedAccess/group`).
    Group,
}

impl Surface {
    fn prefix(self) -> &'static str {
        match self {
            Surface::Directory => "dir",
            Surface::Group => "grp",
        }
    }
}

/// Membership or ownership of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Member,
    Owner,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Member => "member",
            Access::Owner => "owner",
        }
    }

    pub fn parse(text: &str) -> Option<Access> {
        match text {
            "member" => Some(Access::Member),
            "owner" => Some(Access::Owner),
            _ => None,
        }
    }
}

/// What a person can activate: a directory role at a scope, or a group
/// membership or ownership.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoleRef {
    Directory {
        role_definition: String,
        /// `/` for the whole tenant.
        scope: String,
    },
    Group {
        group: String,
        access: Access,
    },
}

/// Graph ids are GUIDs or similar: nothing in them may break our syntax or
/// a URL path. Anything else is not one of ours.
fn plain(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A directory scope: `/`, or `/administrativeUnits/{id}` and the like.
fn scope_ok(scope: &str) -> bool {
    scope == "/"
        || (scope.starts_with('/') && scope.len() <= 256 && scope[1..].split('/').all(plain))
}

impl RoleRef {
    pub fn surface(&self) -> Surface {
        match self {
            RoleRef::Directory { .. } => Surface::Directory,
            RoleRef::Group { .. } => Surface::Group,
        }
    }

    pub fn parse(id: &str) -> Option<RoleRef> {
        if let Some(rest) = id.strip_prefix("dir:") {
            let (role_definition, scope) = match rest.split_once('@') {
                Some((role, scope)) => (role, scope),
                None => (rest, "/"),
            };
            return (plain(role_definition) && scope_ok(scope)).then(|| RoleRef::Directory {
                role_definition: role_definition.to_string(),
                scope: scope.to_string(),
            });
        }
        let rest = id.strip_prefix("grp:")?;
        let (group, access) = rest.rsplit_once(':')?;
        Some(RoleRef::Group {
            group: plain(group).then(|| group.to_string())?,
            access: Access::parse(access)?,
        })
    }
}

impl fmt::Display for RoleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoleRef::Directory {
                role_definition,
                scope,
            } if scope == "/" => write!(f, "dir:{role_definition}"),
            RoleRef::Directory {
                role_definition,
                scope,
            } => write!(f, "dir:{role_definition}@{scope}"),
            RoleRef::Group { group, access } => write!(f, "grp:{group}:{}", access.as_str()),
        }
    }
}

/// A schedule request or an active instance, by its surface and Graph id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub surface: Surface,
    pub id: String,
}

impl ObjectRef {
    pub fn new(surface: Surface, id: &str) -> ObjectRef {
        ObjectRef {
            surface,
            id: id.to_string(),
        }
    }

    pub fn parse(text: &str) -> Option<ObjectRef> {
        let (prefix, id) = text.split_once(':')?;
        let surface = match prefix {
            "dir" => Surface::Directory,
            "grp" => Surface::Group,
            _ => return None,
        };
        plain(id).then(|| ObjectRef::new(surface, id))
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.surface.prefix(), self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";

    #[test]
    fn every_kind_of_role_round_trips() {
        for id in [
            format!("dir:{ROLE}"),
            format!("dir:{ROLE}@/administrativeUnits/5d107bba-d8e2-4e13-b6ae-884be90e5d1a"),
            format!("grp:{ROLE}:member"),
            format!("grp:{ROLE}:owner"),
        ] {
            let parsed = RoleRef::parse(&id).unwrap_or_else(|| panic!("{id}"));
            assert_eq!(parsed.to_string(), id);
        }
        assert_eq!(
            RoleRef::parse(&format!("dir:{ROLE}")),
            Some(RoleRef::Directory {
                role_definition: ROLE.into(),
                scope: "/".into()
            })
        );
        assert_eq!(
            RoleRef::parse(&format!("grp:{ROLE}:owner")).map(|r| r.surface()),
            Some(Surface::Group)
        );
    }

    #[test]
    fn anything_else_is_not_ours() {
        for id in [
            "prod-db-admin",
            "dir:",
            "dir:a/b",
            "dir:x@relative",
            "dir:x@/a/../b",
            "grp:x",
            "grp:x:admin",
            "grp::member",
            "dir:a?b",
        ] {
            assert_eq!(RoleRef::parse(id), None, "{id}");
        }
        assert_eq!(ObjectRef::parse("dir:../x"), None);
        assert_eq!(ObjectRef::parse("abc"), None);
        let request = ObjectRef::parse("grp:0b8a-1").unwrap();
        assert_eq!(request.surface, Surface::Group);
        assert_eq!(request.to_string(), "grp:0b8a-1");
    }
}
