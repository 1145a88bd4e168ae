//! The notes' Queue, Lock and Value/Array examples print what the notes say, under every start
//! method. `cargo test` builds the examples next to the test binaries; this runs them.

use rstest::rstest;
use std::path::PathBuf;
use std::process::Command;

fn run(name: &str, args: &[&str]) -> String {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("test path");
    let path: PathBuf = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("profile dir")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "example {name} not built at {}",
        path.display()
    );
    let out = Command::new(path).args(args).output().expect("run example");
    assert!(out.status.success(), "{name} {args:?} failed: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8 output")
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
