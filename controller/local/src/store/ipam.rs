//! Address allocation for service virtual IPs and pod IPs.
//!
//! The pools are not persisted on their own: they are rebuilt from the
//! stored objects, so they can never disagree with them. Allocation is
//! next-fit from a cursor (persisted in the snapshot), so a freed address is
//! handed out again only after the rest of the range has been used, which
//! keeps stale DNS answers and connections from reaching a new owner.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use strand_controller_core::ResourceKey;

use crate::config::Cidr;

#[derive(Debug)]
pub(super) struct IpPool {
    cidr: Cidr,
    /// "service CIDR" or "pod CIDR", for messages.
    what: &'static str,
    used: HashMap<IpAddr, ResourceKey>,
    /// The offset to try first.
    next: u128,
}

/// Why an address cannot be given to an object.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum IpProblem {
    /// A request the caller must fix (400).
    Invalid(String),
    /// Taken by another object (409).
    Taken(String),
}

// === impl IpPool ===

impl IpPool {
    pub(super) fn new(cidr: Cidr, what: &'static str) -> Self {
        Self {
            cidr,
            what,
            used: HashMap::new(),
            next: cidr.allocatable().0,
        }
    }

    pub(super) fn cursor(&self) -> u128 {
        self.next
    }

    pub(super) fn set_cursor(&mut self, next: u128) {
        let (first, last) = self.cidr.allocatable();
        if (first..=last).contains(&next) {
            self.next = next;
        }
    }

    /// Records that `key` holds `ip` (on commit and on replay). The cursor
    /// only moves forward (or wraps after the last address), so a request
    /// for a low address does not send allocation back over freed ones.
    pub(super) fn reserve(&mut self, ip: IpAddr, key: &ResourceKey) {
        self.used.insert(ip, key.clone());
        let (first, last) = self.cidr.allocatable();
        if let Some(offset) = self.cidr.offset_of(ip)
            && (first..=last).contains(&offset)
            && offset >= self.next
        {
            self.next = if offset == last { first } else { offset + 1 };
        }
    }

    /// Frees `ip` if `key` holds it.
    pub(super) fn release(&mut self, ip: IpAddr, key: &ResourceKey) {
        if self.used.get(&ip) == Some(key) {
            self.used.remove(&ip);
        }
    }

    /// Whether `key` may have `ip`; `batch` holds addresses other documents
    /// of the same change have claimed, with their document numbers.
    pub(super) fn check(
        &self,
        ip: IpAddr,
        key: &ResourceKey,
        batch: &HashMap<IpAddr, usize>,
    ) -> Result<(), IpProblem> {
        let Some(offset) = self.cidr.offset_of(ip) else {
            return Err(IpProblem::Invalid(format!(
                "{ip} is not inside the {} {}",
                self.what, self.cidr
            )));
        };
        let (first, last) = self.cidr.allocatable();
        if !(first..=last).contains(&offset) {
            return Err(IpProblem::Invalid(format!(
                "{ip} is reserved in the {} {} (its network, first or broadcast address)",
                self.what, self.cidr
            )));
        }
        if let Some(doc) = batch.get(&ip) {
            return Err(IpProblem::Invalid(format!(
                "{ip} is also requested by document {doc}"
            )));
        }
        match self.used.get(&ip) {
            Some(holder) if holder != key => Err(IpProblem::Taken(format!(
                "{ip} is already allocated to {holder}"
            ))),
            _ => Ok(()),
        }
    }

    /// The next free address at or after `*cursor`, wrapping once; advances
    /// the cursor past it. `None` when the range is full.
    pub(super) fn allocate(
        &self,
        cursor: &mut u128,
        batch: &HashSet<IpAddr>,
    ) -> Result<IpAddr, IpProblem> {
        let (first, last) = self.cidr.allocatable();
        let mut offset = (*cursor).clamp(first, last);
        let size = last - first + 1;
        let mut tried = 0u128;
        while tried < size {
            let ip = self.cidr.at(offset);
            if !self.used.contains_key(&ip) && !batch.contains(&ip) {
                *cursor = if offset == last { first } else { offset + 1 };
                return Ok(ip);
            }
            offset = if offset == last { first } else { offset + 1 };
            tried += 1;
            // In a huge IPv6 range, a full scan is not a sensible answer.
            if tried > (1 << 24) {
                break;
            }
        }
        Err(IpProblem::Taken(format!(
            "no free address is left in the {} {}",
            self.what, self.cidr
        )))
    }
}
