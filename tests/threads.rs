//! Eight threads writing at once through one `Replica` lose nothing.

mod common;

use std::sync::Arc;

use common::*;

#[test]
fn eight_threads_through_one_replica_lose_nothing() {
    const THREADS: usize = 8;
    const WRITES: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let replica = Arc::new(open(dir.path(), "shared.db", "worker"));
    replica.write(&[entity("Hub", "counter", &[])]).unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let replica = Arc::clone(&replica);
            std::thread::spawn(move || {
                for i in 0..WRITES {
                    // Half the writes create entities, half add to the one entity everyone shares.
                    let op = if i % 2 == 0 {
                        entity(&format!("t{t}-{i}"), "item", &["made"])
                    } else {
                        observe("Hub", &format!("t{t}-{i}"))
                    };
                    replica.write(&[op]).unwrap();
                    if i % 10 == 0 {
                        replica.read_graph().unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let g = replica.read_graph().unwrap().data;
    assert_eq!(g.entities.len(), 1 + THREADS * WRITES / 2);
    assert_eq!(texts(&g, "Hub").len(), THREADS * WRITES / 2);
    // A fresh handle on the file sees exactly the same.
    let again = open(dir.path(), "shared.db", "checker");
    assert_eq!(shape(&again.read_graph().unwrap().data), shape(&g));
}
