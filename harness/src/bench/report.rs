//! `report.html`: self-contained (inline CSS and SVG, no script, no network). The gate's
//! verdicts; one chart per workload with our start methods, CPython, procspawn and the raw limit
//! side by side under each CPU placement (cost per operation, log scale); the cost curves on
//! log–log axes (ours, the raw limit's, CPython's); the targets; the instruction counts; a table
//! of every metric, its placement and its ratios; the machine and the git revision.

use super::results::{CurveResult, Metric, Results};
use super::stats::Verdict;
use super::workload::Kind;
use std::collections::BTreeMap;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A cost per operation, readably.
pub fn human_cost(s: f64) -> String {
    if !s.is_finite() {
        "-".into()
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else if s >= 1e-6 {
        format!("{:.2} µs", s * 1e6)
    } else {
        format!("{:.1} ns", s * 1e9)
    }
}

/// A value in its unit, readably.
pub fn human_value(m: &Metric, v: f64) -> String {
    match (m.kind, m.unit.as_str()) {
        (Kind::Latency, _) => human_cost(v),
        (_, "B/s") => format!("{:.2} GB/s", v / 1e9),
        _ if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        _ => format!("{:.1} k/s", v / 1e3),
    }
}

struct Bar {
    label: String,
    cost: f64,
    class: &'static str,
}

fn chart(title: &str, bars: &[Bar]) -> String {
    let bars: Vec<&Bar> = bars
        .iter()
        .filter(|b| b.cost.is_finite() && b.cost > 0.0)
        .collect();
    if bars.is_empty() {
        return String::new();
    }
    let (w, label_w, row) = (900.0, 320.0, 22.0);
    let h = bars.len() as f64 * row + 30.0;
    let lo = bars
        .iter()
        .map(|b| b.cost)
        .fold(f64::INFINITY, f64::min)
        .log10()
        .floor()
        - 0.3;
    let hi = bars
        .iter()
        .map(|b| b.cost)
        .fold(0.0, f64::max)
        .log10()
        .ceil();
    let span = (hi - lo).max(1.0);
    let x = |c: f64| (c.log10() - lo) / span * (w - label_w - 110.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<figure class="chart"><figcaption>{}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{}">"#,
        esc(title),
        esc(title)
    );
    for (i, b) in bars.iter().enumerate() {
        let y = i as f64 * row + 4.0;
        let bw = x(b.cost).max(2.0);
        let _ = write!(
            s,
            r#"<text x="{:.0}" y="{:.0}" text-anchor="end" class="lbl">{}</text><rect class="bar {}" x="{label_w}" y="{y:.0}" width="{bw:.1}" height="{:.0}"><title>{}: {}</title></rect><text x="{:.1}" y="{:.0}" class="val">{}</text>"#,
            label_w - 6.0,
            y + 14.0,
            esc(&b.label),
            b.class,
            row - 6.0,
            esc(&b.label),
            human_cost(b.cost),
            label_w + bw + 5.0,
            y + 14.0,
            human_cost(b.cost)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{label_w}" y="{:.0}" class="axis">cost per operation, log scale (shorter is better)</text></svg></figure>"#,
        h - 6.0
    );
    s
}

/// A named, coloured series of (x, cost) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// A log–log line chart of one cost curve: cost per operation against the x parameter, ours,
/// the limit's and CPython's.
fn curve_chart(id: &str, c: &CurveResult) -> String {
    let series: Vec<Series> = vec![
        (
            "mproc",
            "#3465a4",
            c.points.iter().map(|p| (p.x as f64, p.cost_s)).collect(),
        ),
        (
            "raw limit",
            "#888a85",
            c.points
                .iter()
                .filter_map(|p| Some((p.x as f64, p.limit_cost_s?)))
                .collect(),
        ),
        (
            "CPython",
            "#f57900",
            c.points
                .iter()
                .filter_map(|p| Some((p.x as f64, p.cpython_cost_s?)))
                .collect(),
        ),
    ];
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .filter(|(x, y)| *x > 0.0 && *y > 0.0 && y.is_finite())
        .collect();
    if pts.is_empty() {
        return String::new();
    }
    let (w, h, left, bottom, top, right) = (640.0, 320.0, 70.0, 40.0, 10.0, 120.0);
    let lx = |v: f64| v.log10();
    let (x0, x1) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(lx(p.0)), b.max(lx(p.0)))
        });
    let (y0, y1) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(lx(p.1)), b.max(lx(p.1)))
        });
    let (x0, x1) = (x0.floor(), x1.ceil().max(x0.floor() + 1.0));
    let (y0, y1) = (y0.floor(), y1.ceil().max(y0.floor() + 1.0));
    let px = |v: f64| left + (lx(v) - x0) / (x1 - x0) * (w - left - right);
    let py = |v: f64| top + (1.0 - (lx(v) - y0) / (y1 - y0)) * (h - top - bottom);
    let mut s = String::new();
    let title = format!(
        "{id} — {} (cost per operation vs {}, log–log; {})",
        c.title, c.x, c.placement
    );
    let _ = write!(
        s,
        r#"<figure class="chart curve"><figcaption>{}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{}">"#,
        esc(&title),
        esc(&title)
    );
    // Axes and decade grid.
    let mut d = x0;
    while d <= x1 + 1e-9 {
        let x = px(10f64.powf(d));
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" class="axis">1e{d}</text>"##,
            h - bottom,
            h - bottom + 14.0
        );
        d += 1.0;
    }
    let mut d = y0;
    while d <= y1 + 1e-9 {
        let y = py(10f64.powf(d));
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="axis">{}</text>"##,
            w - right,
            left - 4.0,
            y + 4.0,
            human_cost(10f64.powf(d))
        );
        d += 1.0;
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="axis">{}</text>"#,
        (left + w - right) / 2.0,
        h - 6.0,
        esc(&c.x)
    );
    for (i, (name, color, data)) in series.iter().enumerate() {
        let data: Vec<&(f64, f64)> = data.iter().filter(|(x, y)| *x > 0.0 && *y > 0.0).collect();
        if data.is_empty() {
            continue;
        }
        let path: Vec<String> = data
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline class="series" data-series="{name}" fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for (x, y) in &data {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{name} {}={x}: {}</title></circle>"#,
                px(*x),
                py(*y),
                esc(&c.x),
                human_cost(*y)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="lbl" fill="{color}">{name}</text>"#,
            w - right + 8.0,
            top + 16.0 + i as f64 * 16.0
        );
    }
    s.push_str("</svg></figure>");
    s
}

/// Renders the report.
pub fn render(r: &Results) -> String {
    let mut s = String::new();
    let f2 = |x: Option<f64>| x.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into());
    let _ = write!(
        s,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>mproc benchmarks</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}}
table{{border-collapse:collapse;margin:1em 0;font-size:14px}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
td:first-child,th:first-child,#targets td:nth-child(2){{text-align:left}}.met{{background:#dfd}}.missed{{background:#fdd}}
.chart{{margin:1.5em 0}}figcaption{{font-weight:600;margin-bottom:.3em}}
.bar.mproc{{fill:#3465a4}}.bar.cpython{{fill:#f57900}}.bar.procspawn{{fill:#4e9a06}}.bar.limit{{fill:#888a85}}.bar.reference{{fill:#babdb6}}
.inconclusive{{background:#ffd}}.bar.split{{fill:#729fcf}}.bar.cpython-split{{fill:#fcaf3e}}.bar.limit-split{{fill:#babdb6}}
.lbl,.val,.axis{{font-size:12px;fill:#222}}.axis{{fill:#666}}.legend span{{display:inline-block;padding:0 .6em;margin-right:.5em;color:#fff}}
</style></head><body><h1>mproc benchmarks</h1>"#
    );
    let _ = write!(
        s,
        r#"<p id="machine">Machine: {} CPUs, {} · kernel {} · load {} · git <code>{}</code>{} · {} run · created {} (unix)</p>"#,
        r.machine.cpus,
        esc(&r.machine.cpu_model),
        esc(&r.machine.kernel),
        esc(&r.machine.loadavg),
        esc(&r.git.rev),
        if r.git.dirty { " (dirty)" } else { "" },
        if r.quick { "quick" } else { "full" },
        r.created_unix
    );
    let _ = write!(
        s,
        r#"<p>CPython: {} · procspawn: {}</p>"#,
        esc(&match (&r.cpython.version, r.cpython.available) {
            (Some(v), true) => v.clone(),
            _ => format!("skipped — {}", r.cpython.notice.clone().unwrap_or_default()),
        }),
        if r.procspawn.available {
            "measured"
        } else {
            "skipped"
        }
    );
    if let Some(p) = &r.placement {
        let _ = write!(
            s,
            r#"<p id="placement">CPU placement: figures are measured under {} (same-cpu: the measuring process, its threads and every child on one CPU; split: children on another CPU). The headline figures, the targets and the gate use {}.{}</p>"#,
            esc(&p
                .available
                .iter()
                .map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(" and ")),
            esc(p.available.first().map(|x| x.as_str()).unwrap_or("-")),
            p.notice
                .as_ref()
                .map(|n| format!(" {}", esc(n)))
                .unwrap_or_default()
        );
    }
    if let Some(g) = &r.gate {
        let verdict = match g.verdict {
            Verdict::Pass => "pass",
            Verdict::Regressed => "REGRESSED",
            Verdict::Inconclusive => "INCONCLUSIVE",
        };
        let _ = write!(
            s,
            r#"<h2>Gate: {verdict}</h2><p id="gate-mode">{} · baseline <code>{}</code> · timings placed {}</p><table id="gate"><tr><th>metric</th><th>A/B ratio</th><th>95% interval</th><th>p</th><th>stored ratio check</th><th>threshold</th><th>attempts</th><th>verdict</th></tr>"#,
            esc(&g.mode),
            esc(g.baseline_rev.as_deref().unwrap_or("-")),
            g.placement
        );
        let f = |x: f64| {
            if x.is_finite() {
                format!("{x:.3}")
            } else {
                "–".into()
            }
        };
        for l in &g.metrics {
            let class = match l.verdict {
                Verdict::Pass => "met",
                Verdict::Regressed => "missed",
                Verdict::Inconclusive => "inconclusive",
            };
            let _ = write!(
                s,
                r#"<tr class="{class}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:?}</td></tr>"#,
                esc(&l.metric),
                l.ab.as_ref()
                    .map(|j| f(j.ratio))
                    .unwrap_or_else(|| "–".into()),
                l.ab.as_ref()
                    .map(|j| format!("{}..{}", f(j.lo), f(j.hi)))
                    .unwrap_or_else(|| "–".into()),
                l.ab.as_ref()
                    .filter(|_| l.kind == "timing")
                    .map(|j| format!("{:.4}", j.p))
                    .unwrap_or_else(|| "–".into()),
                l.stored
                    .as_ref()
                    .map(|j| format!("{} ({:?})", f(j.ratio), j.verdict))
                    .unwrap_or_else(|| esc(l.stored_notice.as_deref().unwrap_or("–"))),
                l.ab.as_ref()
                    .or(l.stored.as_ref())
                    .map(|j| f(j.threshold))
                    .unwrap_or_else(|| "–".into()),
                l.attempts,
                l.verdict
            );
        }
        s.push_str("</table>");
        for n in &g.notices {
            let _ = write!(s, "<p class=\"notice\">{}</p>", esc(n));
        }
    }
    if !r.notices.is_empty() {
        s.push_str("<h2>Notices</h2><ul id=\"notices\">");
        for n in &r.notices {
            let _ = write!(s, "<li>{}</li>", esc(n));
        }
        s.push_str("</ul>");
    }
    s.push_str(r#"<p class="legend"><span style="background:#3465a4">mproc</span><span style="background:#f57900">CPython</span><span style="background:#4e9a06">procspawn</span><span style="background:#888a85">raw limit</span><span style="background:#babdb6">Rust reference (gate)</span></p>"#);

    // Targets.
    s.push_str("<h2>Targets</h2><table id=\"targets\"><tr><th>metric</th><th>what</th><th>target</th><th>reached</th><th>placement / note</th></tr>");
    for t in &r.targets {
        let class = match t.met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "",
        };
        let _ = write!(
            s,
            r#"<tr class="{class}"><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&t.metric),
            esc(&t.what),
            esc(&t.cmp),
            t.bound,
            t.value
                .map(|v| if v >= 1e4 {
                    format!("{v:.3e}")
                } else {
                    format!("{v:.2}")
                })
                .unwrap_or_else(|| "not measured".into()),
            esc(t.note.as_deref().unwrap_or(""))
        );
    }
    s.push_str("</table>");

    // Charts: one per workload.
    s.push_str("<h2>Workloads</h2><div id=\"charts\">");
    let mut by_workload: BTreeMap<&str, Vec<(&String, &Metric)>> = BTreeMap::new();
    for (id, m) in &r.metrics {
        by_workload
            .entry(m.workload.as_str())
            .or_default()
            .push((id, m));
    }
    for (wname, ms) in &by_workload {
        let mut bars = Vec::new();
        for (id, m) in ms {
            bars.push(Bar {
                label: format!("mproc {id}"),
                cost: m.cost_s,
                class: "mproc",
            });
        }
        for (id, m) in ms {
            if let Some(c) = m.cpython_cost_s {
                bars.push(Bar {
                    label: format!("CPython {id}"),
                    cost: c,
                    class: "cpython",
                });
            }
        }
        for (id, m) in ms {
            if let Some(sp) = r.split.get(*id) {
                bars.push(Bar {
                    label: format!("mproc {id} (split)"),
                    cost: sp.cost_s,
                    class: "split",
                });
                if let Some(c) = sp.cpython_cost_s {
                    bars.push(Bar {
                        label: format!("CPython {id} (split)"),
                        cost: c,
                        class: "cpython-split",
                    });
                }
                if let (Some(l), Some(c)) = (&m.limit, sp.limit_cost_s) {
                    bars.push(Bar {
                        label: format!("limit {l} (split)"),
                        cost: c,
                        class: "limit-split",
                    });
                }
            }
        }
        for (pid, p) in r.peers.iter().filter(|(_, p)| p.workload == *wname) {
            bars.push(Bar {
                label: pid.clone(),
                cost: p.cost_s,
                class: "procspawn",
            });
        }
        let mut seen = Vec::new();
        for (_, m) in ms {
            if let (Some(l), Some(c)) = (&m.limit, m.limit_cost_s) {
                if !seen.contains(l) {
                    seen.push(l.clone());
                    bars.push(Bar {
                        label: format!("limit {l}"),
                        cost: c,
                        class: "limit",
                    });
                }
            } else if let (Some(r), Some(c)) = (&m.reference, m.reference_cost_s) {
                if !seen.contains(r) {
                    seen.push(r.clone());
                    bars.push(Bar {
                        label: format!("reference {r}"),
                        cost: c,
                        class: "reference",
                    });
                }
            }
        }
        let title = format!(
            "{} — {} ({})",
            wname,
            ms[0].1.title,
            ms[0].1.placement.as_deref().unwrap_or("free")
        );
        s.push_str(&chart(&title, &bars));
    }
    if !r.limits.is_empty() {
        let bars: Vec<Bar> = r
            .limits
            .iter()
            .map(|(id, m)| Bar {
                label: id.clone(),
                cost: m.cost_s,
                class: "limit",
            })
            .collect();
        s.push_str(&chart(
            "raw OS limits and Rust references (measured on their own)",
            &bars,
        ));
    }
    s.push_str("</div>");

    // Cost curves.
    if !r.curves.is_empty() {
        s.push_str("<h2>Cost curves</h2><p>Cost per operation (per process, item, message) as the work grows, on log–log axes: a curve that stays parallel to its raw limit's scales as the limit does; one that bends upward against it does not.</p><div id=\"curves\">");
        for (id, c) in &r.curves {
            s.push_str(&curve_chart(id, c));
        }
        s.push_str("</div>");
    }

    // Memory.
    if !r.memory.is_empty() {
        let mb = |b: f64| format!("{:.1} MB", b / 1e6);
        s.push_str("<h2>Resident memory per child</h2><p>Read from the parent while the child waits: RSS counts pages shared with the parent; private pages are what the child costs on its own.</p><table id=\"memory\"><tr><th>child</th><th>RSS</th><th>private</th><th>CPython RSS</th><th>CPython private</th></tr>");
        for (id, m) in &r.memory {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(id),
                mb(m.rss_bytes),
                mb(m.private_bytes),
                m.cpython_rss_bytes.map(mb).unwrap_or_else(|| "–".into()),
                m.cpython_private_bytes
                    .map(mb)
                    .unwrap_or_else(|| "–".into())
            );
        }
        s.push_str("</table>");
    }

    // Instruction counts.
    if !r.counts.is_empty() {
        s.push_str("<h2>Instruction counts (callgrind)</h2><table id=\"counts\"><tr><th>hot path</th><th>instructions</th><th>iterations</th><th>per iteration</th></tr>");
        for (id, c) in &r.counts {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td></tr>",
                esc(id),
                c.instructions,
                c.iters,
                c.per_iter()
            );
        }
        s.push_str("</table>");
    }

    // The ratio table.
    s.push_str("<h2>Metrics and ratios</h2><p>vs_limit = our cost ÷ the raw limit's cost (1.0 is the limit, lower is better); vs_cpython = CPython's cost ÷ ours (higher is better); vs_reference = the ratio the gate compares with the baseline.</p><table id=\"ratios\"><tr><th>metric</th><th>placement</th><th>value</th><th>min</th><th>median</th><th>max</th><th>n</th><th>vs_limit</th><th>reference</th><th>vs_reference</th><th>CPython</th><th>vs_cpython</th></tr>");
    let rows = r
        .limits
        .iter()
        .chain(r.limits_split.iter())
        .map(|(k, v)| (format!("limit/{k}"), v))
        .chain(r.metrics.iter().map(|(k, v)| (k.clone(), v)))
        .chain(r.split.iter().map(|(k, v)| (k.clone(), v)))
        .chain(r.peers.iter().map(|(k, v)| (k.clone(), v)));
    for (id, m) in rows {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&id),
            esc(m.placement.as_deref().unwrap_or("–")),
            human_value(m, m.value),
            human_value(m, m.samples.min),
            human_value(m, m.samples.median),
            human_value(m, m.samples.max),
            m.samples.n,
            f2(m.vs_limit),
            esc(m.reference.as_deref().unwrap_or("–")),
            f2(m.vs_reference),
            m.cpython_cost_s.map(human_cost).unwrap_or_else(|| "–".into()),
            f2(m.vs_cpython)
        );
    }
    s.push_str("</table></body></html>\n");
    s
}
