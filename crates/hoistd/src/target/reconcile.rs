//! The reconciler: at start-up and periodically, compares each target with
//! the grants hoist holds, as Kubernetes controllers compare desired and
//! actual state.
//!
//! - Every grant whose access is live has it at the target; access found
//!   missing is provisioned again (through the outbox).
//! - Access this layer created (by its name or label) with no grant behind
//!   it that still holds access (active, or its removal pending in the
//!   outbox) is removed, and audited as `drift_removed`: a role made by
//!   hand, or one left by a crash. The removal is recorded before the call
//!   (`Ledger::drift_found`) and forgotten with its entry, so one whose
//!   entry could not be written then (the store down, leadership lost, a
//!   crash) is audited at a later pass, whichever instance leads by then,
//!   once the target's listing leaves it out and removing it once more
//!   succeeds.
//!
//! What the target lists is read between two reads of the grants holding
//! access, and a role of a grant in either is no drift: access is only
//! ever created for a grant already committed, so a grant that started
//! during the listing is in the second read, and one whose removal finished
//! then (its role listed, gone since) is in the first, not audited as drift
//! it never was. A role left behind by such a removal is the next pass's.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::{GrantFacts, Ledger, TargetError, TargetKind};

/// Targets asked at once about live grants.
const INSPECTIONS_AT_ONCE: usize = 16;
/// Where the next pass starts among each target's live grants (see
/// `target_pass`), by target: one count for all would move a target's
/// start by every other target's passes too, and could bring it back to
/// the same grants each time.
static NEXT_START: std::sync::LazyLock<std::sync::Mutex<BTreeMap<String, usize>>> =
    std::sync::LazyLock::new(Default::default);

/// Where `target`'s pass starts among its live grants, moving the next
/// one's on by what a pass inspects at once.
fn next_start(target: &str) -> usize {
    let mut starts = NEXT_START.lock().unwrap_or_else(|p| p.into_inner());
    let start = starts.entry(target.to_string()).or_default();
    let at = *start;
    *start = start.wrapping_add(INSPECTIONS_AT_ONCE);
    at
}

/// The grants a target is compared with.
#[derive(Debug, Default, Clone)]
pub struct View {
    /// Active grants whose access the target confirmed.
    pub live: Vec<GrantFacts>,
    /// Grants that may hold access there or at any other target (targets
    /// may share a server): active, or ended with their removal still
    /// pending.
    pub holding: HashSet<String>,
}

/// What one pass found and did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Live grants whose access was checked.
    pub checked: usize,
    /// Of those, found missing and provisioned again.
    pub missing: usize,
    /// Access removed that no grant stood behind.
    pub drift_removed: usize,
    /// Targets or grants that could not be checked (unreachable, refused).
    pub failures: usize,
}

/// The targets of one system (one PostgreSQL server, one OpenBao:
/// [`TargetKind::system`]), in name order.
struct Group {
    /// Every system they are: the ones they name, and those their
    /// `formerly` lists.
    systems: BTreeSet<String>,
    targets: Vec<Arc<dyn TargetKind>>,
}

/// The policy's targets by system, under the systems each group is.
/// Targets one of whose systems (its own, or one its `formerly` lists) is
/// another's go together: a target at a new host name whose `formerly`
/// names the old one, beside a target still at the old one, is one server.
fn systems<L: Ledger>(ledger: &L) -> BTreeMap<String, Group> {
    by_system(&ledger.targets())
}

/// See [`systems`].
fn by_system(targets: &super::Targets) -> BTreeMap<String, Group> {
    let mut groups: Vec<Group> = Vec::new();
    for target in targets.iter() {
        let mut group = Group {
            systems: targets.systems_of(target.name()).into_iter().collect(),
            targets: vec![Arc::clone(target)],
        };
        // Every group sharing a system with this one joins it.
        let mut at = 0;
        while at < groups.len() {
            if groups[at].systems.is_disjoint(&group.systems) {
                at += 1;
                continue;
            }
            let other = groups.remove(at);
            group.systems.extend(other.systems);
            group.targets.extend(other.targets);
        }
        groups.push(group);
    }
    groups
        .into_iter()
        .map(|mut group| {
            group.targets.sort_by(|a, b| a.name().cmp(b.name()));
            let key = group
                .systems
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            (key, group)
        })
        .collect()
}

/// Reconciles every target once. The targets of one system take turns
/// ([`system_pass`]); different systems go side by side, so one slow to
/// answer (each call just inside its timeout) holds up no other's pass.
pub async fn pass<L: Ledger>(ledger: &Arc<L>) -> Pass {
    let passes = systems(ledger.as_ref())
        .into_values()
        .map(|group| system_pass(ledger, group.targets));
    let mut total = Pass::default();
    for one in futures::future::join_all(passes).await {
        total.add(one);
    }
    total
}

/// Reconciles one system's targets, one after another: each lists the
/// access the others made there, and side by side they would remove and
/// audit the same drift at the same time.
async fn system_pass<L: Ledger>(ledger: &Arc<L>, targets: Vec<Arc<dyn TargetKind>>) -> Pass {
    let mut total = Pass::default();
    for target in targets {
        total.add(target_pass(ledger, target).await);
    }
    total
}

impl Pass {
    fn add(&mut self, other: Pass) {
        self.checked += other.checked;
        self.missing += other.missing;
        self.drift_removed += other.drift_removed;
        self.failures += other.failures;
    }
}

async fn blocking<L: Ledger, T: Send + 'static>(
    ledger: &Arc<L>,
    call: impl FnOnce(&L) -> crate::error::Result<T> + Send + 'static,
) -> Option<T> {
    let ledger = Arc::clone(ledger);
    match tokio::task::spawn_blocking(move || call(&ledger)).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(err)) => {
            tracing::error!(error = %err, "reconciler: store call failed");
            None
        }
        Err(err) => {
            tracing::error!(error = %err, "reconciler: store call failed");
            None
        }
    }
}

async fn target_pass<L: Ledger>(ledger: &Arc<L>, target: Arc<dyn TargetKind>) -> Pass {
    let mut pass = Pass::default();
    let name = target.name().to_string();
    let names: Arc<[String]> = ledger
        .targets()
        .iter()
        .map(|target| target.name().to_string())
        .collect();
    let journal = ledger.journal().among(names);
    // Leading lapsed as the pass began: nothing is asked without a lease
    // (see `outbox::attempt`); the next leader's pass does it.
    if journal.leader_epoch().is_none() {
        return pass;
    }
    // The grants, what the target holds, the grants (see the module's docs).
    let Some(held_before) = blocking(ledger, |l| l.holding()).await else {
        pass.failures += 1;
        return pass;
    };
    let mut unreachable = false;
    let found = match target.managed(&journal).await {
        Ok(found) => found,
        Err(err) => {
            tracing::warn!(target = %name, error = %err, "reconciler: cannot list the target");
            unreachable = matches!(err, TargetError::Unreachable(..));
            pass.failures += 1;
            None
        }
    };
    let Some(view) = blocking(ledger, {
        let name = name.clone();
        move |l| l.reconcile_view(&name)
    })
    .await
    else {
        pass.failures += 1;
        return pass;
    };

    // A target that cannot be reached is not asked again in this pass: each
    // call would wait out its timeout (one after another where the target
    // signs in once for all), holding up the next pass of every target.
    let down = Arc::new(std::sync::atomic::AtomicBool::new(unreachable));
    // Where the inspections start moves on at each pass, so that a pass
    // that stops part-way (or a target that answers some calls with "too
    // many") leaves other grants for the next, never always the same.
    let mut live = view.live;
    if !live.is_empty() {
        let at = next_start(&name);
        let len = live.len();
        live.rotate_left(at % len);
    }
    let inspections = futures::stream::iter(live.into_iter().map(|grant| {
        let target = Arc::clone(&target);
        let journal = journal.clone();
        let down = Arc::clone(&down);
        async move {
            if down.load(std::sync::atomic::Ordering::Relaxed) {
                return (grant.id, None);
            }
            let present = target.inspect(&grant, &journal).await;
            if matches!(present, Err(TargetError::Unreachable(..))) {
                down.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            (grant.id, Some(present))
        }
    }))
    .buffer_unordered(INSPECTIONS_AT_ONCE)
    .collect::<Vec<_>>()
    .await;
    let skipped = inspections.iter().filter(|(_, p)| p.is_none()).count();
    if skipped > 0 {
        tracing::warn!(target = %name, skipped, "reconciler: target unreachable; its other live grants are checked at the next pass");
        pass.failures += 1;
    }
    for (grant_id, present) in inspections {
        let Some(present) = present else {
            continue;
        };
        pass.checked += 1;
        match present {
            Ok(true) => {}
            Ok(false) => {
                pass.missing += 1;
                let name = name.clone();
                if blocking(ledger, move |l| l.access_missing(&grant_id, &name))
                    .await
                    .is_none()
                {
                    pass.failures += 1;
                }
            }
            Err(err) => {
                tracing::warn!(target = %name, grant = %grant_id, error = %err, "reconciler: cannot inspect");
                pass.failures += 1;
            }
        }
    }

    let held = |managed: &super::Managed| {
        managed
            .grant_id
            .as_ref()
            .is_some_and(|id| view.holding.contains(id) || held_before.contains(id))
    };
    let Some(found) = found else {
        return pass;
    };
    // Removals recorded at earlier passes and never audited: not listed
    // now, removed once more (removing what is gone is done at once) and
    // then audited, since a listing may leave out what it could not look
    // for (OpenBao's accessor search failing); still listed, they are
    // drift again (below), or, a grant standing behind them now, forgotten.
    let recorded = {
        let name = name.clone();
        blocking(ledger, move |l| l.drift_removals(&name)).await
    };
    let Some(recorded) = recorded else {
        pass.failures += 1;
        return pass;
    };
    for removal in recorded {
        let target_kind = Arc::clone(&target);
        let (target, removal) = (name.clone(), removal.clone());
        let done = match found.iter().find(|m| m.name == removal.name) {
            None => match target_kind.remove(&removal, &journal).await {
                Ok(()) => blocking(ledger, move |l| l.drift_removed(&target, &removal)).await,
                Err(err) => {
                    tracing::warn!(target = %name, found = %removal.name, error = %err, "reconciler: cannot remove drift");
                    None
                }
            },
            Some(there) if held(there) => {
                blocking(ledger, move |l| l.drift_explained(&target, &removal.name)).await
            }
            Some(_) => continue,
        };
        if done.is_none() {
            pass.failures += 1;
        }
    }
    for managed in found {
        if held(&managed) {
            continue;
        }
        // Recorded first: a removal nobody could audit after is found again.
        let (target_name, recorded) = (name.clone(), managed.clone());
        if blocking(ledger, move |l| l.drift_found(&target_name, &recorded))
            .await
            .is_none()
        {
            pass.failures += 1;
            continue;
        }
        match target.remove(&managed, &journal).await {
            Ok(()) => {
                pass.drift_removed += 1;
                let (target, found) = (name.clone(), managed.clone());
                if blocking(ledger, move |l| l.drift_removed(&target, &found))
                    .await
                    .is_none()
                {
                    // Recorded still: audited at a later pass.
                    pass.failures += 1;
                }
            }
            Err(err) => {
                tracing::warn!(target = %name, found = %managed.name, error = %err, "reconciler: cannot remove drift");
                pass.failures += 1;
            }
        }
    }
    pass
}

/// Reconciles each system at once, then `every` (from the policy in
/// force) after its last pass ended, or when woken, until `stopped`. Each
/// system keeps its own cycle, so one slow to answer delays no other's
/// next pass. A policy reload's new systems are passed within `every`
/// (at once if woken); those it dropped are no longer. Each time every
/// system has ended a pass since the last such time,
/// [`Ledger::reconciled`] is told.
pub async fn run<L: Ledger>(
    ledger: Arc<L>,
    every: impl Fn() -> Duration + Send + 'static,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
    // When each system not being passed is next due.
    let mut due: BTreeMap<String, Instant> = BTreeMap::new();
    let mut running = futures::stream::FuturesUnordered::new();
    let mut busy: HashSet<String> = HashSet::new();
    // Every system the busy groups are.
    let mut passing: HashSet<String> = HashSet::new();
    // Busy systems woken meanwhile: passed again as soon as they end.
    let mut woken: HashSet<String> = HashSet::new();
    // Systems whose pass ended since `reconciled` was last told.
    let mut round: HashSet<String> = HashSet::new();
    // When the policy's systems are looked at again with nothing else to
    // wake for (a reload's new systems; with none, a round to count).
    let mut relook = Instant::now();
    loop {
        let now = Instant::now();
        let relooking = now >= relook;
        if relooking {
            relook = now + every();
        }
        let mut systems = systems(ledger.as_ref());
        due.retain(|system, _| systems.contains_key(system));
        round.retain(|system| systems.contains_key(system));
        woken.retain(|system| systems.contains_key(system));
        let counted = if systems.is_empty() {
            relooking
        } else {
            systems.keys().all(|system| round.contains(system))
        };
        if counted {
            ledger.reconciled();
            round.clear();
        }
        for (system, group) in std::mem::take(&mut systems) {
            if busy.contains(&system) || due.get(&system).is_some_and(|at| *at > now) {
                continue;
            }
            // A reload may group a system being passed with others: its
            // targets are not passed twice at once.
            if group.systems.iter().any(|one| passing.contains(one)) {
                continue;
            }
            due.remove(&system);
            busy.insert(system.clone());
            passing.extend(group.systems.iter().cloned());
            let ledger = Arc::clone(&ledger);
            running.push(async move {
                let done = system_pass(&ledger, group.targets).await;
                (system, group.systems, done)
            });
        }
        let next = due.values().min().map_or(relook, |at| relook.min(*at));
        tokio::select! {
            // A pass stops where it is when leading does: what it left
            // undone the next leader's first pass does (each step is its
            // own).
            _ = stopped.wait_for(|stopped| *stopped) => return,
            Some((system, systems, done)) = running.next(), if !running.is_empty() => {
                for one in &systems {
                    passing.remove(one);
                }
                if done != Pass::default() {
                    tracing::info!(
                        system = %system,
                        checked = done.checked,
                        missing = done.missing,
                        drift_removed = done.drift_removed,
                        failures = done.failures,
                        "reconciled targets"
                    );
                }
                busy.remove(&system);
                round.insert(system.clone());
                let next = if woken.remove(&system) {
                    Instant::now()
                } else {
                    Instant::now() + every()
                };
                due.insert(system, next);
            }
            _ = tokio::time::sleep_until(next) => {}
            _ = wake.notified() => {
                let now = Instant::now();
                for at in due.values_mut() {
                    *at = now;
                }
                woken.extend(busy.iter().cloned());
                relook = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each target's start moves on by its own passes alone: with two
    /// targets taking turns, a target of 32 live grants starts at 0, then
    /// 16, not at 0 every time.
    #[test]
    fn each_targets_start_moves_on_by_its_own_passes() {
        let (a, b) = ("start-test-a", "start-test-b");
        assert_eq!(next_start(a), 0);
        assert_eq!(next_start(b), 0);
        assert_eq!(next_start(a), INSPECTIONS_AT_ONCE);
        assert_eq!(next_start(b), INSPECTIONS_AT_ONCE);
    }

    /// Targets at one system, or one naming the other's in `formerly`,
    /// take turns; others go side by side.
    #[test]
    fn targets_at_one_system_or_formerly_one_go_together() {
        let dir = tempfile::tempdir().unwrap();
        let hook = |name: &str, url: &str| super::super::webhook::test_hook(dir.path(), name, url);
        let mut targets = super::super::Targets::default();
        let old = hook("old", "https://a.example/hook");
        let was = old.system();
        for target in [
            old,
            hook("moved", "https://b.example/hook"),
            hook("twin", "https://a.example/hook"),
            hook("other", "https://c.example/hook"),
        ] {
            assert!(targets.insert(target));
        }
        let names = |targets: &super::super::Targets| {
            by_system(targets)
                .into_values()
                .map(|group| group.targets.iter().map(|t| t.name().to_string()).collect())
                .collect::<BTreeSet<Vec<String>>>()
        };
        assert_eq!(
            names(&targets),
            BTreeSet::from([
                vec!["moved".to_string()],
                vec!["old".to_string(), "twin".to_string()],
                vec!["other".to_string()],
            ])
        );
        targets.set_formerly("moved", vec![was]);
        assert_eq!(
            names(&targets),
            BTreeSet::from([
                vec!["moved".to_string(), "old".to_string(), "twin".to_string()],
                vec!["other".to_string()],
            ])
        );
    }
}
