//! Rows a worker cannot read, and the reads that go past them.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use super::reaper::passing;
use crate::error::{Error, Result};

/// The rows a worker's last look could not read (a value that does not
/// decode: a row edited outside hoistd), by id, each logged once while it
/// stays so. While there are any, the worker reads what is due one row at
/// a time, past them, and they count against no limit: one bad row must
/// not stop every read after it, nor a batch of them fill it.
#[derive(Default)]
pub(super) struct Unread(Mutex<HashSet<String>>);

impl Unread {
    fn held(&self) -> MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many more than a look's limit to list for [`Unread::read_each`].
    pub(super) fn room(&self) -> usize {
        self.held().len()
    }

    /// What is due, as `together` reads it, unless rows are known not to
    /// read or it fails for a reason other than the database's; then as
    /// `singly` reads it, one row at a time ([`Unread::read_each`]).
    /// `what` names the worker's rows in the log.
    pub(super) fn read<T>(
        &self,
        what: &str,
        together: impl FnOnce() -> Result<Vec<T>>,
        singly: impl FnOnce() -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        // The workers look again after every row they act on: once rows
        // are known not to read, a read together would only fail again.
        if !self.held().is_empty() {
            return singly();
        }
        match together() {
            Err(err) if !passing(&err) => {
                tracing::warn!(
                    rows = what,
                    error = %err,
                    "could not be read together; reading each on its own"
                );
                singly()
            }
            Ok(due) => {
                self.held().clear();
                Ok(due)
            }
            err => err,
        }
    }

    /// Reads each of `listed` (in order, `key` its id) with `read` (none:
    /// gone meanwhile) until `limit` are found. One that cannot be read
    /// for a reason other than the database's is left out, and `told` the
    /// first time; the rest are read past it.
    pub(super) fn read_each<I, T>(
        &self,
        listed: Vec<I>,
        key: impl Fn(&I) -> &str,
        limit: usize,
        mut read: impl FnMut(&I) -> Result<Option<T>>,
        told: impl Fn(&I, &Error),
    ) -> Result<Vec<T>> {
        let before = self.held().clone();
        let mut found = Vec::new();
        let mut unread = HashSet::new();
        for item in listed {
            let id = key(&item);
            if found.len() == limit {
                // Not read again this look, and still not to be counted.
                if before.contains(id) {
                    unread.insert(id.to_string());
                }
                continue;
            }
            match read(&item) {
                Ok(Some(one)) => found.push(one),
                Ok(None) => {}
                Err(err) if passing(&err) => return Err(err),
                Err(err) => {
                    if !before.contains(id) {
                        told(&item, &err);
                    }
                    unread.insert(id.to_string());
                }
            }
        }
        *self.held() = unread;
        Ok(found)
    }
}
