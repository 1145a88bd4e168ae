//! The report: JSON (`report.json`), the terminal table, and a self-contained HTML page.

use crate::model::{Bar, CaseReport, Report, Verdict};
use std::fmt::Write;

const METHODS: [&str; 3] = ["fork", "spawn", "forkserver"];

impl Report {
    /// The terminal table, failures, notices, and the closing line.
    pub fn table(&self) -> String {
        let w = self
            .cases
            .iter()
            .map(|c| c.id.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<w$}  {:<6} {:<6} {:<10} CPython",
            "case", "fork", "spawn", "forkserver"
        );
        for c in &self.cases {
            let cell = |m: &str| {
                c.runs
                    .iter()
                    .find(|r| r.method == m)
                    .map(|r| r.verdict())
                    .unwrap_or("-")
            };
            let _ = writeln!(
                s,
                "{:<w$}  {:<6} {:<6} {:<10} {}",
                c.id,
                cell("fork"),
                cell("spawn"),
                cell("forkserver"),
                c.cpython.verdict.as_str()
            );
        }
        for c in self.cases.iter().filter(|c| !c.passed) {
            let _ = writeln!(s, "\nFAILED {} ({})", c.id, c.path);
            for r in &c.runs {
                for f in &r.outcome.failures {
                    let _ = writeln!(s, "  [{}] {f}", r.method);
                }
            }
            if c.cpython.verdict == Verdict::Differs {
                for (m, d) in &c.cpython.diffs {
                    let _ = writeln!(s, "  [CPython {m}] trace differs (- CPython, + mproc) and the case does not say why:\n{}", indent(d));
                }
                if let Some(n) = &c.cpython.note {
                    let _ = writeln!(s, "  [CPython] {n}");
                }
            }
        }
        for b in &self.bad {
            let _ = writeln!(s, "{b}");
        }
        let intended = self
            .cases
            .iter()
            .filter(|c| c.cpython.verdict == Verdict::IntendedDifference)
            .count();
        if intended > 0 {
            let _ = writeln!(
                s,
                "intended differences from CPython: {intended} (see the report)"
            );
        }
        if let Some(n) = &self.reference_notice {
            let _ = writeln!(s, "{n}");
        }
        let _ = writeln!(s, "{}", self.summary_line());
        s
    }

    /// The self-contained HTML report.
    pub fn html(&self) -> String {
        let mut s = String::new();
        s.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>mproc conformance</title><style>\n");
        s.push_str(CSS);
        s.push_str("</style></head><body>\n<h1>mproc conformance</h1>\n");
        let _ = writeln!(
            s,
            "<p id=\"summary\">{} &middot; {} cases &middot; CPython {} &middot; {:.1} s</p>",
            esc(&self.summary_line()),
            self.cases.len(),
            esc(self.python.as_deref().unwrap_or("not run")),
            self.wall_ms as f64 / 1000.0
        );
        if let Some(n) = &self.reference_notice {
            let _ = writeln!(s, "<p class=\"notice\">{}</p>", esc(n));
        }
        if !self.bad.is_empty() {
            s.push_str("<h2>Bad case files</h2><ul id=\"bad\">");
            for b in &self.bad {
                let _ = write!(s, "<li><code>{}</code></li>", esc(&b.to_string()));
            }
            s.push_str("</ul>");
        }
        s.push_str("<h2>Matrix</h2>\n<table id=\"matrix\"><thead><tr><th>case</th><th>title</th>");
        for m in METHODS {
            let _ = write!(s, "<th>{m}</th>");
        }
        s.push_str("<th>CPython</th></tr></thead><tbody>\n");
        for c in &self.cases {
            let _ = write!(s, "<tr class=\"case-row\" data-case=\"{}\"><td><a href=\"#{}\">{}</a></td><td>{}</td>", esc(&c.id), anchor(&c.id), esc(&c.id), esc(&c.title));
            for m in METHODS {
                match c.runs.iter().find(|r| r.method == m) {
                    Some(r) => {
                        let cls = if r.passed() { "pass" } else { "fail" };
                        let _ = write!(s, "<td class=\"verdict {cls}\">{}</td>", r.verdict());
                    }
                    None => s.push_str("<td class=\"verdict na\">-</td>"),
                }
            }
            let cls = match c.cpython.verdict {
                Verdict::Agree => "pass",
                Verdict::IntendedDifference => "intended",
                Verdict::Skipped => "na",
                Verdict::Differs => "fail",
            };
            let _ = writeln!(
                s,
                "<td class=\"verdict {cls}\">{}</td></tr>",
                esc(c.cpython.verdict.as_str())
            );
        }
        s.push_str("</tbody></table>\n<h2>Cases</h2>\n");
        for c in &self.cases {
            self.case_html(&mut s, c);
        }
        s.push_str("</body></html>\n");
        s
    }

    fn case_html(&self, s: &mut String, c: &CaseReport) {
        let _ = writeln!(
            s,
            "<section class=\"case\" id=\"{}\"><h3>{} <small>{}</small></h3>",
            anchor(&c.id),
            esc(&c.id),
            esc(&c.title)
        );
        let _ = writeln!(
            s,
            "<p>source: {} &middot; <code>{}</code></p>",
            esc(&c.source),
            esc(&c.path)
        );
        if let Some(d) = &c.differs_from_cpython {
            let _ = writeln!(
                s,
                "<p class=\"intended\">differs from CPython on purpose: {}</p>",
                esc(d)
            );
        }
        if let Some(d) = &c.differs_between_methods {
            let _ = writeln!(
                s,
                "<p class=\"intended\">differs between start methods on purpose: {}</p>",
                esc(d)
            );
        }
        for r in &c.runs {
            for f in &r.outcome.failures {
                let _ = writeln!(s, "<p class=\"fail\">[{}] {}</p>", r.method, esc(f));
            }
        }
        let show_timeline = c.timeline || c.runs.iter().any(|r| r.outcome.timeline.len() >= 2);
        if show_timeline {
            s.push_str("<div class=\"timelines\">");
            for r in c.runs.iter().chain(c.reference.iter()) {
                let who = if c.reference.iter().any(|x| std::ptr::eq(x, r)) {
                    "CPython"
                } else {
                    "mproc"
                };
                timeline_svg(s, &format!("{who} {}", r.method), &r.outcome.timeline);
            }
            s.push_str("</div>");
        }
        if let Some(t) = c.runs.first().and_then(|r| r.outcome.trace.as_ref()) {
            let _ = writeln!(
                s,
                "<details><summary>trace ({})</summary><pre class=\"trace\">{}</pre></details>",
                c.runs[0].method,
                esc(&serde_json::to_string_pretty(t).unwrap_or_default())
            );
        }
        let timings: Vec<String> = c
            .runs
            .iter()
            .flat_map(|r| {
                r.outcome
                    .measured
                    .timings
                    .iter()
                    .map(move |(k, (ms, lo, hi))| {
                        format!(
                            "{} {k}: {ms:.0} ms (bounds {} .. {})",
                            r.method,
                            lo.map(|x| format!("{x:.0}")).unwrap_or_default(),
                            hi.map(|x| format!("{x:.0}")).unwrap_or_default()
                        )
                    })
            })
            .collect();
        if !timings.is_empty() {
            let _ = writeln!(s, "<p class=\"timings\">{}</p>", esc(&timings.join(" · ")));
        }
        if let Some(d) = &c.method_diff {
            let _ = writeln!(s, "<details open><summary>difference between start methods</summary><pre class=\"diff\">{}</pre></details>", diff_html(d));
        }
        if c.cpython.diffs.is_empty() {
            let _ = writeln!(
                s,
                "<p class=\"cpy\">CPython: {}</p>",
                esc(c.cpython.verdict.as_str())
            );
        }
        for (m, d) in &c.cpython.diffs {
            let _ = writeln!(s, "<details open><summary>diff against CPython ({m}): {}; − CPython, + mproc</summary><pre class=\"diff\">{}</pre></details>", esc(c.cpython.verdict.as_str()), diff_html(d));
        }
        if let Some(n) = &c.cpython.note {
            let _ = writeln!(s, "<p class=\"notice\">{}</p>", esc(n));
        }
        s.push_str("</section>\n");
    }
}

fn timeline_svg(s: &mut String, title: &str, bars: &[Bar]) {
    let lanes = bars.iter().map(|b| b.lane).max().unwrap_or(0);
    let end = bars
        .iter()
        .map(|b| b.end_ms.unwrap_or(b.start_ms))
        .fold(1.0f64, f64::max);
    let (w, lane_h, left) = (560.0, 22.0, 70.0);
    let h = 30.0 + lanes as f64 * lane_h;
    let scale = (w - left - 10.0) / end;
    let _ = write!(s, "<figure class=\"timeline\"><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\">", esc(title));
    for l in 1..=lanes {
        let y = 8.0 + (l - 1) as f64 * lane_h;
        let _ = write!(
            s,
            "<text x=\"4\" y=\"{:.1}\" class=\"lane\">worker {l}</text>",
            y + 14.0
        );
    }
    for b in bars {
        let y = 8.0 + (b.lane - 1) as f64 * lane_h;
        let x = left + b.start_ms * scale;
        let wid = ((b.end_ms.unwrap_or(end) - b.start_ms) * scale).max(2.0);
        let cls = if b.end_ms.is_some() {
            "bar"
        } else {
            "bar open"
        };
        let _ = write!(
            s,
            "<rect class=\"{cls}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{wid:.1}\" height=\"{:.1}\"><title>{} ({}) {:.0}..{} ms</title></rect>",
            lane_h - 6.0,
            esc(&b.task),
            esc(&b.label),
            b.start_ms,
            b.end_ms.map(|e| format!("{e:.0}")).unwrap_or_else(|| "never returned".into())
        );
    }
    let _ = write!(s, "<text x=\"{left}\" y=\"{:.1}\" class=\"axis\">0</text><text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{end:.0} ms</text></svg>", h - 6.0, w - 10.0, h - 6.0);
    // The same bars one row per task, in start order: serialised work is a staircase even when
    // one worker ran every task.
    let row_h = 9.0;
    let th = 6.0 + bars.len() as f64 * row_h;
    let _ = write!(s, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"by-task\" width=\"{w}\" height=\"{th}\" role=\"img\"><text x=\"4\" y=\"10\" class=\"lane\">tasks</text>");
    for (i, b) in bars.iter().enumerate() {
        let y = 3.0 + i as f64 * row_h;
        let x = left + b.start_ms * scale;
        let wid = ((b.end_ms.unwrap_or(end) - b.start_ms) * scale).max(2.0);
        let _ = write!(s, "<rect class=\"task\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{wid:.1}\" height=\"{:.1}\"><title>worker {}: {} ({})</title></rect>", row_h - 2.0, b.lane, esc(&b.task), esc(&b.label));
    }
    s.push_str("</svg></figure>");
}

fn diff_html(d: &str) -> String {
    d.lines()
        .map(|l| {
            let cls = if l.starts_with('+') {
                "add"
            } else if l.starts_with('-') {
                "del"
            } else {
                "same"
            };
            format!("<span class=\"{cls}\">{}</span>", esc(l))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn anchor(id: &str) -> String {
    id.replace(['/', ' '], "-")
}

/// HTML-escapes `s`.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px}
.verdict.pass{background:#d7f5d7}.verdict.fail{background:#f7caca;font-weight:bold}
.verdict.intended{background:#fde9b5}.verdict.na{color:#999}
.intended{background:#fff6dc;padding:2px 6px}.fail{color:#a00}.notice{color:#555;font-style:italic}
section.case{border-top:1px solid #ddd;margin-top:1em}
pre{background:#f6f6f6;padding:6px;font-size:12px;overflow:auto;max-height:30em}
.diff .add{color:#060}.diff .del{color:#a00}
.timelines{display:flex;flex-wrap:wrap;gap:8px}figure.timeline{margin:0}
figcaption{font-size:12px;color:#444}svg .bar{fill:#4a7fd4}svg .bar.open{fill:#d48a4a}svg .task{fill:#7a9a3a}
svg text{font-size:11px;fill:#333}
";

/// The report as pretty JSON.
pub fn to_json(report: &Report) -> Result<String, String> {
    serde_json::to_string_pretty(report).map_err(|e| e.to_string())
}
