//! The Queue, Lock and Value/Array examples print what the programs of Python's documentation
//! they mirror print, under every start method. `cargo test` builds the examples next to the
//! test binaries; this runs them.

mod common;

use rstest::rstest;

fn run(name: &str, args: &[&str]) -> String {
    common::run_example(name, args)
}

#[rstest]
fn value_array_prints_pi_and_the_negated_range(#[values("fork", "spawn", "forkserver")] m: &str) {
    assert_eq!(
        run("value_array", &["--method", m]),
        "3.1415927\n[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]\n"
    );
}

#[rstest]
fn lock_print_prints_each_line_whole_once(#[values("fork", "spawn", "forkserver")] m: &str) {
    let out = run("lock_print", &["--method", m]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable_by_key(|l| l.rsplit(' ').next().and_then(|n| n.parse::<u32>().ok()));
    let want: Vec<String> = (0..10).map(|i| format!("hello world {i}")).collect();
    assert_eq!(lines, want, "{out}");
}

#[rstest]
fn queue_rw_reads_what_was_written_in_order(#[values("fork", "spawn", "forkserver")] m: &str) {
    let out = run("queue_rw", &["--method", m]);
    let lines: Vec<&str> = out.lines().collect();
    let pos = |l: &str| {
        lines
            .iter()
            .position(|x| *x == l)
            .unwrap_or_else(|| panic!("missing {l:?} in {out}"))
    };
    assert_eq!(lines.len(), 8, "{out}");
    assert!(lines.iter().any(|l| l.starts_with("Process to write: ")));
    assert!(lines.iter().any(|l| l.starts_with("Process to read: ")));
    let mut last_get = 0;
    for v in ["A", "B", "C"] {
        let put = pos(&format!("Put {v} to queue..."));
        let get = pos(&format!("Get {v} from queue."));
        assert!(put < get, "{out}");
        assert!(get > last_get, "{out}");
        last_get = get;
    }
}
