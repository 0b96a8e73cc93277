//! The reference table store: every table a `BTreeMap` by primary key, in memory. The SQL
//! stores must end with exactly its rows (`tests/tables.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use closeloop_core::log::Position;
use uuid::Uuid;

use super::{new_generation, Changes, Dump, Saved, TableError, TableStore, VERSION};

#[derive(Debug, Default)]
struct Tables {
    position: Position,
    generation: String,
    calendars: Option<String>,
    work: HashMap<Uuid, String>,
    rows: Changes,
}

/// Tables in memory (`--store memory:`); nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryTables {
    tables: Mutex<Tables>,
}

impl MemoryTables {
    pub fn new() -> MemoryTables {
        MemoryTables::default()
    }
}

fn merge<K: Ord + Clone, V: Clone>(into: &mut BTreeMap<K, V>, from: &BTreeMap<K, V>) {
    for (k, v) in from {
        into.insert(k.clone(), v.clone());
    }
}

#[async_trait::async_trait]
impl TableStore for MemoryTables {
    async fn open(&self) -> Result<Saved, TableError> {
        let mut t = self.tables.lock().expect("tables lock");
        if t.generation.is_empty() {
            t.generation = new_generation();
        }
        Ok(Saved {
            version: VERSION,
            position: t.position,
            calendars: t.calendars.clone(),
            generation: t.generation.clone(),
        })
    }

    async fn works(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, String)>, TableError> {
        let t = self.tables.lock().expect("tables lock");
        Ok(ids
            .iter()
            .filter_map(|id| t.work.get(id).map(|w| (*id, w.clone())))
            .collect())
    }

    async fn commit(
        &self,
        generation: &str,
        from: Position,
        to: Position,
        changes: Changes,
    ) -> Result<(), TableError> {
        let mut t = self.tables.lock().expect("tables lock");
        if t.position != from || t.generation != generation {
            return Err(TableError::Fenced {
                expected: from,
                found: t.position,
            });
        }
        t.position = to;
        if let Some(c) = &changes.calendars {
            t.calendars = Some(c.clone());
        }
        for (id, w) in &changes.work {
            t.work.insert(*id, w.clone());
        }
        let rows = &mut t.rows;
        merge(&mut rows.tickets, &changes.tickets);
        merge(&mut rows.sla_timers, &changes.sla_timers);
        merge(&mut rows.assignments, &changes.assignments);
        merge(&mut rows.resolutions, &changes.resolutions);
        merge(
            &mut rows.satisfaction_ratings,
            &changes.satisfaction_ratings,
        );
        merge(&mut rows.agents, &changes.agents);
        Ok(())
    }

    async fn dump(&self) -> Result<Dump, TableError> {
        let t = self.tables.lock().expect("tables lock");
        let r = &t.rows;
        Ok(Dump {
            tickets: r.tickets.values().cloned().collect(),
            sla_timers: r.sla_timers.values().cloned().collect(),
            assignments: r.assignments.values().cloned().collect(),
            resolutions: r.resolutions.values().cloned().collect(),
            satisfaction_ratings: r.satisfaction_ratings.values().cloned().collect(),
            agents: r.agents.values().cloned().collect(),
        })
    }
}
