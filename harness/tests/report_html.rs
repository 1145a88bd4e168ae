//! The HTML report opens in a real browser: headless Chromium loads it, the matrix and the
//! timelines are in the DOM, and a screenshot is saved under `target/` for review. Skipped, with a
//! notice, where `/usr/bin/chromium` is absent (`.ci/run` installs Debian's `chromium`).

use mproc_harness::model::Bar;
use mproc_harness::suite::{self, Options, Reference, Tools};
use std::path::{Path, PathBuf};

mod common;

use common::{chromium, CHROMIUM};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn staircase(bars: &[Bar]) -> bool {
    bars.windows(2)
        .all(|w| w[0].end_ms.is_some_and(|e| w[1].start_ms >= e))
}

#[test]
fn report_renders_in_chromium_with_matrix_and_timelines() {
    mproc::init();
    let out = root().join("target").join("report-test");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("out dir");
    let opts = Options {
        cases: root().join("cases"),
        methods: Vec::new(),
        filter: Some("sequential_children,parallel_children".into()),
        reference: Reference::Auto,
        jobs: 2,
    };
    let tools = Tools {
        case_bin: PathBuf::from(env!("CARGO_BIN_EXE_mproc-case")),
        python: Some(PathBuf::from("python3")),
        reference: root().join("harness").join("py").join("reference.py"),
        work: out.join("runs"),
    };
    let report = suite::run_suite(&opts, &tools, &|_, _, _| {}).expect("suite runs");
    assert!(report.cases.len() >= 2, "the timeline cases exist");
    assert_eq!(report.failed, 0, "{}", report.table());

    // The data behind the pictures: serialised children make a staircase, parallel ones overlap.
    for c in &report.cases {
        for r in &c.runs {
            let bars = &r.outcome.timeline;
            assert_eq!(bars.len(), 3, "{} {}: {bars:?}", c.id, r.method);
            if c.id.ends_with("sequential_children") {
                assert!(
                    staircase(bars),
                    "{} {}: not a staircase: {bars:?}",
                    c.id,
                    r.method
                );
            } else if c.id.ends_with("parallel_children") {
                assert!(
                    !staircase(bars),
                    "{} {}: did not overlap: {bars:?}",
                    c.id,
                    r.method
                );
            }
        }
    }

    let page = out.join("report.html");
    std::fs::write(&page, report.html()).expect("write report");
    if !Path::new(CHROMIUM).exists() {
        eprintln!("notice: {CHROMIUM} not found; the browser check is skipped (install Debian's chromium)");
        return;
    }
    let url = format!("file://{}", page.display());
    let dom = chromium(&["--dump-dom".to_string(), url.clone()]);
    assert!(dom.contains("id=\"matrix\""), "no matrix in the DOM");
    let rows = dom.matches("class=\"case-row\"").count();
    assert_eq!(rows, report.cases.len(), "one matrix row per case");
    assert!(
        dom.matches("<figure class=\"timeline\"").count() >= 6,
        "a timeline per run"
    );
    assert!(
        dom.matches("<rect class=\"bar\"").count() >= 18,
        "task bars in the timelines"
    );

    let shot = root().join("target").join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[
        "--window-size=1200,1600".to_string(),
        format!("--screenshot={}", shot.display()),
        url,
    ]);
    let len = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        len > 10_000,
        "screenshot {} is missing or empty",
        shot.display()
    );
}
