//! Which roles the Roles screen lists, in what order: favourites pinned on
//! top, then by fuzzy-match score (as fzf ranks), then by id.

use std::collections::BTreeSet;

use hoist_api::Role;
use nucleo_matcher::pattern::{CaseMatching, Normalization, Pattern};
use nucleo_matcher::{Config, Matcher, Utf32Str};

/// Indices of the roles matching `filter`, in display order.
pub fn visible(roles: &[Role], favourites: &BTreeSet<String>, filter: &str) -> Vec<usize> {
    let filter = filter.trim();
    let mut ranked: Vec<(bool, u32, usize)> = if filter.is_empty() {
        (0..roles.len())
            .map(|i| (favourites.contains(&roles[i].id), 0, i))
            .collect()
    } else {
        let pattern = Pattern::parse(filter, CaseMatching::Smart, Normalization::Smart);
        let mut matcher = Matcher::new(Config::DEFAULT);
        let mut buf = Vec::new();
        let mut haystack = String::new();
        roles
            .iter()
            .enumerate()
            .filter_map(|(i, role)| {
                haystack.clear();
                haystack.push_str(&role.id);
                haystack.push(' ');
                haystack.push_str(&role.name);
                haystack.push(' ');
                haystack.push_str(&role.scope);
                let score = pattern.score(Utf32Str::new(&haystack, &mut buf), &mut matcher)?;
                Some((favourites.contains(&role.id), score, i))
            })
            .collect()
    };
    ranked.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(b.1.cmp(&a.1))
            .then_with(|| roles[a.2].id.cmp(&roles[b.2].id))
    });
    ranked.into_iter().map(|(_, _, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoist_api::{ApprovalRule, TicketRule};

    fn role(id: &str, name: &str) -> Role {
        Role {
            id: id.into(),
            name: name.into(),
            description: String::new(),
            scope: String::new(),
            default_duration_secs: 60,
            max_duration_secs: 60,
            approval: ApprovalRule {
                approvals: 0,
                approver_groups: vec![],
                approvers: vec![],
            },
            break_glass: false,
            ticket: TicketRule {
                required: false,
                pattern: None,
            },
            min_justification: 0,
        }
    }

    #[test]
    fn favourites_pin_on_top_and_fuzzy_filters_rank() {
        let roles = vec![
            role("staging-db-admin", "Staging DB"),
            role("prod-db-admin", "Production DB"),
            role("prod-logs-read", "Logs"),
        ];
        let ids = |v: Vec<usize>| {
            v.into_iter()
                .map(|i| roles[i].id.as_str())
                .collect::<Vec<_>>()
        };
        let none = BTreeSet::new();
        assert_eq!(
            ids(visible(&roles, &none, "")),
            ["prod-db-admin", "prod-logs-read", "staging-db-admin"]
        );
        let fav: BTreeSet<String> = ["staging-db-admin".to_string()].into();
        assert_eq!(ids(visible(&roles, &fav, ""))[0], "staging-db-admin");
        assert_eq!(ids(visible(&roles, &none, "pdb")), ["prod-db-admin"]);
        assert!(visible(&roles, &none, "zzz").is_empty());
    }
}
