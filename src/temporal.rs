//! Which facts hold when: the filter every read applies (current by default), what it left
//! out and why, and supersede conflicts (one fact replaced by several that hold at once).
//!
//! Reads first gather every fact present (from the index, or from the documents at an earlier
//! version), then [`sieve`] them here, so both clocks answer by the same rules.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{
    FactRef, Graph, LeftOut, Millis, Observation, Relation, RelationFact, Replacement, SupersedeConflict, Validity,
};

/// Which facts a read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Filter {
    /// The world time facts must hold at, and at which conflicts are judged.
    pub(crate) at: Millis,
    /// Every fact present, whatever its validity.
    pub(crate) all: bool,
}

impl Filter {
    fn keeps(&self, v: &Validity) -> bool {
        self.all || v.holds_at(self.at)
    }
}

/// Why a fact that does not hold at `t` was left out: replaced by another, ended, or not begun.
fn count_left_out(left_out: &mut LeftOut, v: &Validity, t: Millis, replaced: bool) {
    if v.valid_from.is_some_and(|f| t < f) {
        left_out.not_yet_valid += 1;
    } else if replaced {
        left_out.superseded += 1;
    } else {
        left_out.expired += 1;
    }
}

/// Applies `filter` to a graph holding every fact present, and says what it left out and
/// which facts have more than one replacement holding at the filter's time.
pub(crate) fn sieve(mut graph: Graph, filter: Filter) -> Graph {
    let t = filter.at;
    let mut left_out = LeftOut::default();
    let mut conflicts: BTreeMap<FactRef, Vec<Replacement>> = BTreeMap::new();
    for entity in &mut graph.entities {
        let replaced: BTreeSet<String> = entity.observations.iter().filter_map(|o| o.replaces.clone()).collect();
        for o in entity.observations.iter().filter(|o| o.validity.holds_at(t)) {
            if let Some(old) = &o.replaces {
                let old = FactRef::Observation { entity: entity.name.clone(), text: old.clone() };
                conflicts.entry(old).or_default().push(observation_replacement(&entity.name, o));
            }
        }
        entity.observations.retain(|o| {
            let keep = filter.keeps(&o.validity);
            if !keep {
                count_left_out(&mut left_out, &o.validity, t, replaced.contains(&o.text));
            }
            keep
        });
    }
    let replaced: BTreeSet<Relation> = graph.relations.iter().filter_map(|r| r.replaces.clone()).collect();
    for r in graph.relations.iter().filter(|r| r.validity.holds_at(t)) {
        if let Some(old) = &r.replaces {
            conflicts.entry(FactRef::Relation { relation: old.clone() }).or_default().push(relation_replacement(r));
        }
    }
    graph.relations.retain(|r| {
        let keep = filter.keeps(&r.validity);
        if !keep {
            count_left_out(&mut left_out, &r.validity, t, replaced.contains(&r.relation));
        }
        keep
    });
    graph.left_out = left_out;
    graph.conflicts = into_conflicts(conflicts);
    graph
}

/// The conflicts among replacements that hold (a graph of replacements holding at one time,
/// as `index::replacements_holding_at` reads it).
pub(crate) fn conflicts_among(replacements: &Graph) -> Vec<SupersedeConflict> {
    let mut conflicts: BTreeMap<FactRef, Vec<Replacement>> = BTreeMap::new();
    for entity in &replacements.entities {
        for o in &entity.observations {
            if let Some(old) = &o.replaces {
                let old = FactRef::Observation { entity: entity.name.clone(), text: old.clone() };
                conflicts.entry(old).or_default().push(observation_replacement(&entity.name, o));
            }
        }
    }
    for r in &replacements.relations {
        if let Some(old) = &r.replaces {
            conflicts.entry(FactRef::Relation { relation: old.clone() }).or_default().push(relation_replacement(r));
        }
    }
    into_conflicts(conflicts)
}

fn into_conflicts(all: BTreeMap<FactRef, Vec<Replacement>>) -> Vec<SupersedeConflict> {
    all.into_iter()
        .filter(|(_, replacements)| replacements.len() > 1)
        .map(|(replaced, mut replacements)| {
            replacements.sort_by(|a, b| (a.at, &a.fact).cmp(&(b.at, &b.fact)));
            SupersedeConflict { replaced, replacements }
        })
        .collect()
}

fn observation_replacement(entity: &str, o: &Observation) -> Replacement {
    Replacement {
        fact: FactRef::Observation { entity: entity.to_owned(), text: o.text.clone() },
        by: o.by.clone(),
        at: o.at,
        validity: o.validity,
    }
}

fn relation_replacement(r: &RelationFact) -> Replacement {
    Replacement {
        fact: FactRef::Relation { relation: r.relation.clone() },
        by: r.by.clone(),
        at: r.at,
        validity: r.validity,
    }
}
