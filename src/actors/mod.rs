//! The actors, one file each with its messages, and the `Registry` that maps ids to them.
//! Each actor is the single owner of its state; what many requests read is published by
//! its owner in a `*Shared` struct (atomics and small locks) so reads never queue behind
//! writes.

pub mod booking_store;
pub mod center_inventory;
pub mod cluster_sync;
pub mod cohort_queue;
pub mod identity_pool;
pub mod leftovers;
pub mod notifier;
pub mod notify_provider;
pub mod rebooker;
pub mod shared_limits;

use actix::Addr;
use center_inventory::{CenterInventory, CenterShared};
use cohort_queue::CohortHandle;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

#[derive(Clone)]
pub struct CenterHandle {
    pub addr: Addr<CenterInventory>,
    pub shared: Arc<CenterShared>,
    /// The center's leftover doses and their offer line.
    pub leftovers: Addr<leftovers::LeftoverLine>,
    pub leftover_shared: Arc<leftovers::LeftoverShared>,
}

/// Which actor serves which cohort, center and slot. Filled at start from the database and
/// when the admin API creates things; read by every request.
#[derive(Default)]
pub struct Registry {
    cohorts: RwLock<BTreeMap<i32, CohortHandle>>,
    centers: RwLock<BTreeMap<i32, CenterHandle>>,
    slot_centers: RwLock<HashMap<i32, i32>>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    pub fn cohort(&self, id: i32) -> Option<CohortHandle> {
        read(&self.cohorts).get(&id).cloned()
    }

    pub fn cohorts(&self) -> Vec<CohortHandle> {
        read(&self.cohorts).values().cloned().collect()
    }

    pub fn add_cohort(&self, handle: CohortHandle) {
        write(&self.cohorts).insert(handle.shared.id, handle);
    }

    pub fn center(&self, id: i32) -> Option<CenterHandle> {
        read(&self.centers).get(&id).cloned()
    }

    pub fn centers(&self) -> Vec<CenterHandle> {
        read(&self.centers).values().cloned().collect()
    }

    pub fn add_center(&self, handle: CenterHandle) {
        write(&self.centers).insert(handle.shared.id, handle);
    }

    pub fn center_of_slot(&self, slot_id: i32) -> Option<CenterHandle> {
        let center = *read(&self.slot_centers).get(&slot_id)?;
        self.center(center)
    }

    /// Every slot id served here.
    pub fn slot_ids(&self) -> std::collections::HashSet<i32> {
        read(&self.slot_centers).keys().copied().collect()
    }

    pub fn add_slots(&self, center_id: i32, slot_ids: impl IntoIterator<Item = i32>) {
        let mut map = write(&self.slot_centers);
        for id in slot_ids {
            map.insert(id, center_id);
        }
    }
}
