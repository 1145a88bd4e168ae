//! Property tests: proptest generates case instances (numbers of children, their inputs, how
//! each ends, task durations), writes them as case files, and runs them through the same runner
//! under each start method. Invariants: results equal the sequential answer, exit codes follow
//! each child's fate, every started process is reaped, and starting all children before joining
//! is never slower than starting each after the last ended (beyond noise).

use mproc::StartMethod;
use mproc_harness::case::Case;
use mproc_harness::model::RunOutcome;
use mproc_harness::suite::{self, Runner, Tools};
use proptest::prelude::*;
use std::fmt::Write;
use std::path::PathBuf;

/// Each run has its own folder: tests run side by side.
fn tools(work: PathBuf) -> Tools {
    Tools {
        case_bin: PathBuf::from(env!("CARGO_BIN_EXE_mproc-case")),
        python: None,
        reference: PathBuf::new(),
        work,
    }
}

fn run(text: &str, method: StartMethod) -> RunOutcome {
    let scratch = tempfile::Builder::new()
        .prefix("properties-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a scratch folder");
    let dir = scratch.path().join("generated");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("case.toml");
    std::fs::write(&path, text).expect("write");
    let case =
        Case::load(&path).unwrap_or_else(|e| panic!("generated case is invalid: {e}\n{text}"));
    suite::run_job(&case, Runner::Mproc, method, &tools(dir.join("work")))
}

/// How an extra child ends, and the exit code that stands for it.
#[derive(Clone, Debug)]
enum Fate {
    Return,
    Exit(i64),
    Fail,
    Panic,
    Killed,
    Terminated,
}

impl Fate {
    fn task(&self) -> String {
        match self {
            Fate::Return => "task = \"noop\"".into(),
            Fate::Exit(n) => format!("task = \"exit\", args = [{n}]"),
            Fate::Fail => "task = \"fail\", args = [\"no\"]".into(),
            Fate::Panic => "task = \"panic\", args = [\"no\"]".into(),
            Fate::Killed => "task = \"kill_self\", args = [9]".into(),
            Fate::Terminated => "task = \"hang\"".into(),
        }
    }
    fn code(&self) -> i64 {
        match self {
            Fate::Return => 0,
            Fate::Exit(n) => *n,
            Fate::Fail | Fate::Panic => 1,
            Fate::Killed => -9,
            Fate::Terminated => -15,
        }
    }
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        Just(Fate::Return),
        (0i64..100).prop_map(Fate::Exit),
        Just(Fate::Fail),
        Just(Fate::Panic),
        Just(Fate::Killed),
        Just(Fate::Terminated),
    ]
}

fn method() -> impl Strategy<Value = StartMethod> {
    prop_oneof![
        Just(StartMethod::Fork),
        Just(StartMethod::Spawn),
        Just(StartMethod::Forkserver)
    ]
}

fn squares_case(xs: &[i64], fates: &[Fate]) -> String {
    let mut t = String::from("title = \"generated\"\nsource = \"proptest\"\n");
    let _ = writeln!(t, "params = {{ xs = {xs:?} }}");
    let n = xs.len();
    let _ = writeln!(t, "[[step]]\neach = {{ i = \"0..{n}\" }}\npipe = {{ ids = [\"a$i\", \"b$i\"] }}\nprocess = {{ id = \"p$i\", task = \"recv_square\", args = [\"b$i\"] }}\nstart = \"p$i\"");
    for (j, f) in fates.iter().enumerate() {
        let _ = writeln!(
            t,
            "[[step]]\nprocess = {{ id = \"f{j}\", {} }}\nstart = \"f{j}\"",
            f.task()
        );
    }
    let _ = writeln!(
        t,
        "[[step]]\neach = {{ i = \"0..{n}\" }}\nsend = {{ id = \"a$i\", value = \"$xs[$i]\" }}"
    );
    let _ = writeln!(
        t,
        "[[step]]\neach = {{ i = \"0..{n}\" }}\nrecv = \"a$i\"\njoin = \"p$i\""
    );
    for (j, f) in fates.iter().enumerate() {
        if matches!(f, Fate::Terminated) {
            let _ = writeln!(t, "[[step]]\nterminate = \"f{j}\"");
        }
        let _ = writeln!(t, "[[step]]\njoin = \"f{j}\"");
    }
    let squares: Vec<i64> = xs.iter().map(|x| x * x).collect();
    let _ = writeln!(t, "[expect]\nresults = {squares:?}");
    t
}

fn timing_case(sleeps: &[i64], parallel: bool) -> String {
    let mut t = String::from("title = \"generated\"\nsource = \"proptest\"\n");
    let n = sleeps.len();
    let _ = writeln!(t, "params = {{ sleeps_ms = {sleeps:?} }}");
    if parallel {
        let _ = writeln!(t, "[[step]]\neach = {{ i = \"0..{n}\" }}\nprocess = {{ id = \"p$i\", task = \"sleep\", args = [\"$sleeps_ms[$i]\"] }}\nstart = \"p$i\"\n[[step]]\neach = {{ i = \"0..{n}\" }}\njoin = \"p$i\"");
    } else {
        let _ = writeln!(t, "[[step]]\neach = {{ i = \"0..{n}\" }}\nprocess = {{ id = \"p$i\", task = \"sleep\", args = [\"$sleeps_ms[$i]\"] }}\nstart = \"p$i\"\njoin = \"p$i\"");
    }
    let _ = writeln!(t, "[expect]\nelapsed = {{ at_least = \"max(sleeps_ms)\" }}");
    t
}

fn elapsed(out: &RunOutcome) -> f64 {
    out.measured
        .timings
        .get("elapsed")
        .map(|t| t.0)
        .expect("elapsed measured")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    /// Results equal the sequential answer; exit codes follow each child's fate; nothing is left
    /// running; the trace is the same under every start method.
    #[test]
    fn results_and_exit_codes_under_every_method(
        xs in proptest::collection::vec(-1000i64..1000, 1..5),
        fates in proptest::collection::vec(fate(), 0..4),
    ) {
        mproc::init();
        let text = squares_case(&xs, &fates);
        let mut traces = Vec::new();
        for m in [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver] {
            let out = run(&text, m);
            prop_assert!(out.failures.is_empty(), "{m}: {:?}\n{}\n{text}", out.failures, out.stderr);
            let trace = out.trace.expect("trace");
            prop_assert!(trace.unreaped.is_empty());
            for (j, f) in fates.iter().enumerate() {
                prop_assert_eq!(trace.exitcodes.get(&format!("f{j}")).cloned().flatten(), Some(f.code()), "{} {:?}", m, f);
            }
            for i in 0..xs.len() {
                prop_assert_eq!(trace.exitcodes.get(&format!("p{i}")).cloned().flatten(), Some(0));
            }
            traces.push(trace);
        }
        prop_assert!(traces.windows(2).all(|w| w[0] == w[1]), "traces differ between methods");
    }

    /// Starting every child before joining any is never slower than serialising them, beyond
    /// noise; and never faster than the longest task.
    #[test]
    fn parallel_is_never_slower_than_serial(
        sleeps in proptest::collection::vec(50i64..250, 2..4),
        m in method(),
    ) {
        mproc::init();
        let par = run(&timing_case(&sleeps, true), m);
        let ser = run(&timing_case(&sleeps, false), m);
        prop_assert!(par.failures.is_empty() && ser.failures.is_empty(), "{:?} {:?}", par.failures, ser.failures);
        let (p, s) = (elapsed(&par), elapsed(&ser));
        let sum: i64 = sleeps.iter().sum();
        prop_assert!(s >= sum as f64, "serial {s} ms < sum {sum} ms");
        prop_assert!(p <= s + 150.0, "{m}: parallel {p:.0} ms slower than serial {s:.0} ms");
    }
}

/// A pool case: `tasks[i] = (x, ms, fails)`, submitted in `submit` order, fetched in `fetch`
/// order, with every `get` before `join` (serialised) or after it.
fn pool_case(
    processes: usize,
    tasks: &[(i64, i64, bool)],
    submit: &[usize],
    fetch: &[usize],
    get_first: bool,
) -> String {
    let mut t = String::from("title = \"generated\"\nsource = \"proptest\"\n");
    let _ = writeln!(
        t,
        "[[step]]\npool = {{ id = \"p\", processes = {processes} }}"
    );
    let submit_step = |t: &mut String, i: usize| {
        let (x, ms, fails) = tasks[i];
        let _ = if fails {
            writeln!(t, "[[step]]\napply_async = {{ pool = \"p\", task = \"fail\", args = [\"task {i}\"], id = \"r{i}\" }}")
        } else {
            writeln!(t, "[[step]]\napply_async = {{ pool = \"p\", task = \"sleep_square\", args = [{x}, {ms}], id = \"r{i}\" }}")
        };
    };
    let get_step = |t: &mut String, i: usize| {
        let err = if tasks[i].2 {
            ", error = \"Remote\""
        } else {
            ""
        };
        let _ = writeln!(t, "[[step]]\nget = {{ id = \"r{i}\"{err} }}");
    };
    for &i in submit {
        submit_step(&mut t, i);
        if get_first {
            get_step(&mut t, i);
        }
    }
    let _ = writeln!(t, "[[step]]\nclose = \"p\"\n[[step]]\njoin = \"p\"");
    if !get_first {
        for &i in fetch {
            get_step(&mut t, i);
        }
    }
    let _ = writeln!(t, "[expect]\nelapsed = {{ at_least = 0 }}");
    t
}

fn permutation(n: usize) -> impl Strategy<Value = Vec<usize>> {
    Just((0..n).collect::<Vec<_>>()).prop_shuffle()
}

/// A pool size, the tasks `(x, ms, fails)`, a submission order and a get order.
type PoolInputs = (usize, Vec<(i64, i64, bool)>, Vec<usize>, Vec<usize>);

fn pool_inputs() -> impl Strategy<Value = PoolInputs> {
    (
        1usize..4,
        proptest::collection::vec(
            (0i64..100, 100i64..250, proptest::bool::weighted(0.2)),
            1..6,
        ),
    )
        .prop_flat_map(|(procs, tasks)| {
            let n = tasks.len();
            (Just(procs), Just(tasks), permutation(n), permutation(n))
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the pool size, submission order and get order: each result is the sequential
    /// answer (x² or the task's failure), under every start method; and fetching after join is
    /// never slower than fetching inside the submit loop, beyond noise.
    #[test]
    fn pool_results_equal_the_sequential_answer((procs, tasks, submit, fetch) in pool_inputs()) {
        mproc::init();
        for m in [StartMethod::Fork, StartMethod::Spawn, StartMethod::Forkserver] {
            let mut elapsed_by_order = Vec::new();
            for get_first in [true, false] {
                let text = pool_case(procs, &tasks, &submit, &fetch, get_first);
                let out = run(&text, m);
                prop_assert!(out.failures.is_empty(), "{m}: {:?}\n{}\n{text}", out.failures, out.stderr);
                let trace = out.trace.clone().expect("trace");
                prop_assert!(trace.unreaped.is_empty());
                let order = if get_first { &submit } else { &fetch };
                let gets: Vec<_> = trace.events.iter().filter(|e| e.op == "get").collect();
                prop_assert_eq!(gets.len(), tasks.len());
                for (ev, &i) in gets.iter().zip(order.iter()) {
                    let (x, _, fails) = tasks[i];
                    if fails {
                        prop_assert_eq!(ev.error.as_deref(), Some("Remote"));
                    } else {
                        prop_assert_eq!(ev.value.clone(), Some(serde_json::json!(x * x)));
                    }
                }
                elapsed_by_order.push(elapsed(&out));
            }
            let (serial, overlapped) = (elapsed_by_order[0], elapsed_by_order[1]);
            // get-before-join runs the tasks one after another: at least the sum of their sleeps.
            let sum: i64 = tasks.iter().filter(|t| !t.2).map(|t| t.1).sum();
            prop_assert!(serial >= sum as f64, "{m}: get-before-join {serial:.0} ms < sum {sum} ms");
            // Generous margins: two cores shared with other tests, workers starting and exiting.
            prop_assert!(overlapped <= 1.5 * serial + 500.0, "{m}: join-before-get {overlapped:.0} ms, get-before-join {serial:.0} ms");
        }
    }
}
