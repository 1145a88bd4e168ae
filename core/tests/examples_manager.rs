//! The Manager examples print what the programs they mirror print (and, for the Lock, what only
//! a manager's lock can do), under every start method. `cargo test` builds the examples next to
//! the test binaries; this runs them.

mod common;

use rstest::rstest;

#[rstest]
fn manager_prints_the_dict_and_the_reversed_list(#[values("fork", "spawn", "forkserver")] m: &str) {
    assert_eq!(
        common::run_example("manager", &["--method", m]),
        "{1: '1', '2': 2, 0.25: None}\n[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]\n"
    );
}

#[rstest]
fn lock_vs_manager_lock_shows_what_only_the_manager_lock_does(
    #[values("fork", "spawn", "forkserver")] m: &str,
) {
    assert_eq!(
        common::run_example("lock_vs_manager_lock", &["--method", m]),
        "Lock(): 4 workers added 4000\n\
         Manager().Lock(): 4 workers added 400\n\
         another program waits for the manager's lock: it is held\n\
         another program took the manager's lock\n\
         a program died holding the manager's lock: the manager released it (owner_died: true)\n"
    );
}
