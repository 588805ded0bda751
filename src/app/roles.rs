//! Which roles the Roles screen lists, in what order: favourites pinned on
//! top, then by fuzzy-match score (as fzf ranks), then by id.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use hoist_api::Role;
use nucleo_matcher::pattern::{CaseMatching, Normalization, Pattern};
use nucleo_matcher::{Config, Matcher, Utf32Str};

/// Below this many roles one thread scores them all; above it, each core
/// takes a share. Filtering runs on every keystroke, and with 10,000 roles
/// one core takes several milliseconds.
const ROLES_PER_THREAD: usize = 2_000;

/// Indices of the roles matching `filter`, in display order.
pub fn visible(roles: &[Role], favourites: &BTreeSet<String>, filter: &str) -> Vec<usize> {
    let filter = filter.trim();
    let scored: Vec<(u32, usize)> = if filter.is_empty() {
        (0..roles.len()).map(|i| (0, i)).collect()
    } else {
        let pattern = Pattern::parse(filter, CaseMatching::Smart, Normalization::Smart);
        score(roles, &pattern)
    };
    rank(roles, favourites, scored)
}

/// `(score, index)` of every role the pattern matches, in no particular order.
fn score(roles: &[Role], pattern: &Pattern) -> Vec<(u32, usize)> {
    let threads = cores().min(roles.len() / ROLES_PER_THREAD).max(1);
    if threads == 1 {
        return score_every(roles, 0, 1, pattern);
    }
    // Interleaved shares: the roles of one environment or service sit
    // together in id order, and cost alike, so contiguous shares would not
    // take equally long.
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..threads)
            .map(|first| scope.spawn(move || score_every(roles, first, threads, pattern)))
            .collect();
        let mut all = score_every(roles, 0, threads, pattern);
        for other in others {
            match other.join() {
                Ok(part) => all.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    })
}

/// Scores roles `first`, `first + step`, `first + 2 * step`...
fn score_every(roles: &[Role], first: usize, step: usize, pattern: &Pattern) -> Vec<(u32, usize)> {
    let mut matcher = Matcher::new(Config::DEFAULT);
    let mut buf = Vec::new();
    let mut haystack = String::new();
    (first..roles.len())
        .step_by(step)
        .filter_map(|i| {
            let role = &roles[i];
            haystack.clear();
            haystack.push_str(&role.id);
            haystack.push(' ');
            haystack.push_str(&role.name);
            haystack.push(' ');
            haystack.push_str(&role.scope);
            let score = pattern.score(Utf32Str::new(&haystack, &mut buf), &mut matcher)?;
            Some((score, i))
        })
        .collect()
}

/// Favourites first, then the best score, then by id. Sorts one packed
/// integer per role rather than comparing ids: the broker lists roles in
/// id order, so the index breaks ties, and only an unsorted list pays for
/// ranking ids.
fn rank(roles: &[Role], favourites: &BTreeSet<String>, scored: Vec<(u32, usize)>) -> Vec<usize> {
    let by_id = id_order(roles);
    // `position` of a role in id order; `order` maps it back to an index.
    let position = |i: usize| by_id.as_ref().map_or(i, |(_, position)| position[i]);
    const INDEX_BITS: u32 = 31;
    let mut keys: Vec<u64> = scored
        .into_iter()
        .filter(|(_, i)| *i < 1 << INDEX_BITS)
        .map(|(score, i)| {
            let other = u64::from(!favourites.contains(&roles[i].id));
            (other << 63) | (u64::from(u32::MAX - score) << INDEX_BITS) | position(i) as u64
        })
        .collect();
    keys.sort_unstable();
    let mask = (1_u64 << INDEX_BITS) - 1;
    keys.into_iter()
        .map(|key| {
            let at = (key & mask) as usize;
            by_id.as_ref().map_or(at, |(order, _)| order[at])
        })
        .collect()
}

/// `None` when the roles are already in id order; otherwise the indices in
/// id order and each index's position in it.
fn id_order(roles: &[Role]) -> Option<(Vec<usize>, Vec<usize>)> {
    if roles.windows(2).all(|pair| pair[0].id <= pair[1].id) {
        return None;
    }
    let mut order: Vec<usize> = (0..roles.len()).collect();
    order.sort_by(|a, b| roles[*a].id.cmp(&roles[*b].id));
    let mut position = vec![0; roles.len()];
    for (at, index) in order.iter().enumerate() {
        position[*index] = at;
    }
    Some((order, position))
}

fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
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

    #[test]
    fn large_and_unsorted_lists_rank_as_small_sorted_ones() {
        // Enough roles to be scored on several threads, listed out of id order.
        let roles: Vec<Role> = (0..5_000)
            .rev()
            .map(|i| role(&format!("role-{:04}-{}", i % 2_500, i / 2_500), "Name"))
            .collect();
        let fav: BTreeSet<String> = ["role-0042-1".to_string()].into();
        let slow = |filter: &str| {
            let pattern = Pattern::parse(filter, CaseMatching::Smart, Normalization::Smart);
            let mut matcher = Matcher::new(Config::DEFAULT);
            let mut buf = Vec::new();
            let mut ranked: Vec<(bool, u32, usize)> = roles
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let haystack = format!("{} {} {}", r.id, r.name, r.scope);
                    let score = if filter.is_empty() {
                        0
                    } else {
                        pattern.score(Utf32Str::new(&haystack, &mut buf), &mut matcher)?
                    };
                    Some((fav.contains(&r.id), score, i))
                })
                .collect();
            ranked.sort_by(|a, b| {
                b.0.cmp(&a.0)
                    .then(b.1.cmp(&a.1))
                    .then_with(|| roles[a.2].id.cmp(&roles[b.2].id))
            });
            ranked.into_iter().map(|(_, _, i)| i).collect::<Vec<_>>()
        };
        for filter in ["", "r42", "role-01", "e-0042-1", "zzz"] {
            assert_eq!(
                visible(&roles, &fav, filter),
                slow(filter),
                "filter {filter:?}"
            );
        }
        assert_eq!(roles[visible(&roles, &fav, "")[0]].id, "role-0042-1");
    }
}
