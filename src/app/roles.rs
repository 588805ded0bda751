//! Which roles the Roles screen lists, in what order: favourites pinned on
//! top, then by fuzzy-match score (as fzf ranks), then by id. The filter
//! matches what each row shows, the role's id and name, so a row never
//! matches for a reason the list does not show.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use hoist_api::Role;
use nucleo_matcher::pattern::{CaseMatching, Normalization, Pattern};
use nucleo_matcher::{Config, Matcher, Utf32Str};

/// Below this many roles one thread scores them all; above it, each core
/// takes a share. Filtering runs on every keystroke, and with 10,000 roles
/// one core takes several milliseconds.
const ROLES_PER_THREAD: usize = 2_000;

/// A matching role's score and index, kept small: one filter's answer over
/// 10,000 roles is held for each character typed.
type Scored = (u32, u32);

/// Every index of `roles`, as candidates for scoring.
fn every_index(roles: &[Role]) -> impl Iterator<Item = u32> {
    (0..roles.len()).map_while(|i| u32::try_from(i).ok())
}

/// Indices of the roles matching `filter`, in display order. `search`
/// keeps what earlier calls learned about the same roles.
pub fn visible(
    roles: &[Role],
    favourites: &BTreeSet<String>,
    filter: &str,
    search: &mut Search,
) -> Vec<usize> {
    if search.roles != roles.len() {
        search.clear();
        search.roles = roles.len();
    }
    let filter = filter.trim();
    if filter.is_empty() {
        search.answers.clear();
        let all: Vec<Scored> = every_index(roles).map(|i| (0, i)).collect();
        let order = search.id_order(roles);
        return rank(roles, favourites, &all, order);
    }
    search.score(roles, filter);
    let Search {
        answers, id_order, ..
    } = search;
    let scored = answers.last().map_or(&[][..], |(_, scored)| scored);
    rank(
        roles,
        favourites,
        scored,
        id_order.get_or_insert_with(|| IdOrder::of(roles)),
    )
}

/// What filtering one list of roles keeps between keystrokes: the order of
/// their ids, and the matches of each filter typed so far, each filter
/// extending the one before, as fzf keeps them. Typing one more character
/// scores only the roles the shorter filter matched; erasing one takes the
/// earlier answer back without scoring anything. Clear it when the roles
/// change.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// How many roles the rest is about.
    roles: usize,
    id_order: Option<IdOrder>,
    answers: Vec<(String, Vec<Scored>)>,
}

impl Search {
    pub fn clear(&mut self) {
        *self = Search::default();
    }

    fn id_order(&mut self, roles: &[Role]) -> &IdOrder {
        self.id_order.get_or_insert_with(|| IdOrder::of(roles))
    }

    /// Leaves the matches of `filter` as the last answer.
    fn score(&mut self, roles: &[Role], filter: &str) {
        // Answers to filters this one does not extend are no use any more.
        while self
            .answers
            .last()
            .is_some_and(|(typed, _)| !narrows(typed, filter))
        {
            self.answers.pop();
        }
        if self
            .answers
            .last()
            .is_some_and(|(typed, _)| typed == filter)
        {
            return;
        }
        let pattern = Pattern::parse(filter, CaseMatching::Smart, Normalization::Smart);
        let scored = match self.answers.last() {
            Some((_, before)) => {
                let candidates: Vec<u32> = before.iter().map(|(_, i)| *i).collect();
                score(roles, &candidates, &pattern)
            }
            None => score(roles, &every_index(roles).collect::<Vec<_>>(), &pattern),
        };
        self.answers.push((filter.to_string(), scored));
    }
}

/// Whether `longer` matches only roles `shorter` matches: it extends it, and
/// uses none of the syntax under which a longer pattern can match more
/// (`!` negates, `^` `$` `'` anchor or make an atom exact, `\\` escapes).
fn narrows(shorter: &str, longer: &str) -> bool {
    longer.starts_with(shorter) && !longer.contains(['!', '^', '$', '\'', '\\'])
}

/// `(score, index)` of every candidate role the pattern matches, in no
/// particular order.
fn score(roles: &[Role], candidates: &[u32], pattern: &Pattern) -> Vec<Scored> {
    let threads = cores().min(candidates.len() / ROLES_PER_THREAD).max(1);
    if threads == 1 {
        return score_every(roles, candidates, 0, 1, pattern);
    }
    // Interleaved shares: the roles of one environment or service sit
    // together in id order, and cost alike, so contiguous shares would not
    // take equally long.
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..threads)
            .map(|first| {
                scope.spawn(move || score_every(roles, candidates, first, threads, pattern))
            })
            .collect();
        let mut all = score_every(roles, candidates, 0, threads, pattern);
        for other in others {
            match other.join() {
                Ok(part) => all.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    })
}

/// Scores candidates `first`, `first + step`, `first + 2 * step`...
fn score_every(
    roles: &[Role],
    candidates: &[u32],
    first: usize,
    step: usize,
    pattern: &Pattern,
) -> Vec<Scored> {
    let mut matcher = Matcher::new(Config::DEFAULT);
    let mut buf = Vec::new();
    let mut haystack = String::new();
    candidates[first.min(candidates.len())..]
        .iter()
        .step_by(step)
        .filter_map(|&i| {
            let role = &roles[i as usize];
            haystack.clear();
            haystack.push_str(&role.id);
            haystack.push(' ');
            haystack.push_str(&role.name);
            let score = pattern.score(Utf32Str::new(&haystack, &mut buf), &mut matcher)?;
            Some((score, i))
        })
        .collect()
}

/// Favourites first, then the best score, then by id. Sorts one packed
/// integer per role rather than comparing ids: `order` gives each role's
/// place in id order once per list, so ties cost nothing.
fn rank(
    roles: &[Role],
    favourites: &BTreeSet<String>,
    scored: &[Scored],
    order: &IdOrder,
) -> Vec<usize> {
    const INDEX_BITS: u32 = 31;
    let mut keys: Vec<u64> = scored
        .iter()
        .filter(|(_, i)| *i < 1 << INDEX_BITS)
        .map(|&(score, i)| {
            let i = i as usize;
            let other = u64::from(!favourites.contains(&roles[i].id));
            (other << 63) | (u64::from(u32::MAX - score) << INDEX_BITS) | order.position(i) as u64
        })
        .collect();
    keys.sort_unstable();
    let mask = (1_u64 << INDEX_BITS) - 1;
    keys.into_iter()
        .map(|key| order.index((key & mask) as usize))
        .collect()
}

/// Where each role stands in id order. The broker lists roles in id order,
/// so usually that is simply their index.
#[derive(Debug, Clone)]
enum IdOrder {
    AsListed,
    Sorted {
        /// Indices in id order.
        order: Vec<usize>,
        /// Each index's place in `order`.
        position: Vec<usize>,
    },
}

impl IdOrder {
    fn of(roles: &[Role]) -> IdOrder {
        if roles.windows(2).all(|pair| pair[0].id <= pair[1].id) {
            return IdOrder::AsListed;
        }
        let mut order: Vec<usize> = (0..roles.len()).collect();
        order.sort_by(|a, b| roles[*a].id.cmp(&roles[*b].id));
        let mut position = vec![0; roles.len()];
        for (at, index) in order.iter().enumerate() {
            position[*index] = at;
        }
        IdOrder::Sorted { order, position }
    }

    fn position(&self, index: usize) -> usize {
        match self {
            IdOrder::AsListed => index,
            IdOrder::Sorted { position, .. } => position[index],
        }
    }

    fn index(&self, position: usize) -> usize {
        match self {
            IdOrder::AsListed => position,
            IdOrder::Sorted { order, .. } => order[position],
        }
    }
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
            target: None,
            tier: None,
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
            ids(visible(&roles, &none, "", &mut Search::default())),
            ["prod-db-admin", "prod-logs-read", "staging-db-admin"]
        );
        let fav: BTreeSet<String> = ["staging-db-admin".to_string()].into();
        assert_eq!(
            ids(visible(&roles, &fav, "", &mut Search::default()))[0],
            "staging-db-admin"
        );
        assert_eq!(
            ids(visible(&roles, &none, "pdb", &mut Search::default())),
            ["prod-db-admin"]
        );
        assert!(visible(&roles, &none, "zzz", &mut Search::default()).is_empty());
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
                    let haystack = format!("{} {}", r.id, r.name);
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
                visible(&roles, &fav, filter, &mut Search::default()),
                slow(filter),
                "filter {filter:?}"
            );
        }
        // Typed key by key, erased, and typed again, with the answers kept
        // between keys: each step ranks as it would from scratch, also where
        // a longer pattern matches more (negation, anchors, escapes).
        let mut search = Search::default();
        for text in [
            "role-004 2-1",
            "role !-1",
            "^role-00",
            "e$",
            "'ole-0042",
            "ro\\ le",
        ] {
            let mut filter = String::new();
            let mut steps: Vec<String> = text
                .chars()
                .map(|c| {
                    filter.push(c);
                    filter.clone()
                })
                .collect();
            let erased: Vec<String> = steps.iter().rev().skip(1).cloned().collect();
            steps.extend(erased);
            steps.push("r".into());
            for filter in steps {
                assert_eq!(
                    visible(&roles, &fav, &filter, &mut search),
                    slow(filter.trim()),
                    "filter {filter:?} typed from {text:?}"
                );
            }
        }
        assert_eq!(
            roles[visible(&roles, &fav, "", &mut Search::default())[0]].id,
            "role-0042-1"
        );
    }
}
