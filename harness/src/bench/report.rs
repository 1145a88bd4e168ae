//! `report.html`: self-contained (inline CSS and SVG, no script, no network). One chart per
//! workload with our start methods, CPython, procspawn and the raw limit side by side (cost per
//! operation, log scale); the targets; a table of every metric and its ratios; the machine and
//! the git revision.

use super::results::{Metric, Results};
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
    if !r.notices.is_empty() {
        s.push_str("<h2>Notices</h2><ul id=\"notices\">");
        for n in &r.notices {
            let _ = write!(s, "<li>{}</li>", esc(n));
        }
        s.push_str("</ul>");
    }
    s.push_str(r#"<p class="legend"><span style="background:#3465a4">mproc</span><span style="background:#f57900">CPython</span><span style="background:#4e9a06">procspawn</span><span style="background:#888a85">raw limit</span><span style="background:#babdb6">Rust reference (gate)</span></p>"#);

    // Targets.
    s.push_str("<h2>Targets</h2><table id=\"targets\"><tr><th>metric</th><th>what</th><th>target</th><th>reached</th></tr>");
    for t in &r.targets {
        let class = match t.met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "",
        };
        let _ = write!(
            s,
            r#"<tr class="{class}"><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td></tr>"#,
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
                .unwrap_or_else(|| "not measured".into())
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
        let title = format!("{} — {}", wname, ms[0].1.title);
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

    // The ratio table.
    s.push_str("<h2>Metrics and ratios</h2><p>vs_limit = our cost ÷ the raw limit's cost (1.0 is the limit, lower is better); vs_cpython = CPython's cost ÷ ours (higher is better); vs_reference = the ratio the gate compares with the baseline.</p><table id=\"ratios\"><tr><th>metric</th><th>value</th><th>min</th><th>median</th><th>max</th><th>n</th><th>vs_limit</th><th>reference</th><th>vs_reference</th><th>CPython</th><th>vs_cpython</th></tr>");
    let rows = r
        .limits
        .iter()
        .map(|(k, v)| (format!("limit/{k}"), v))
        .chain(r.metrics.iter().map(|(k, v)| (k.clone(), v)))
        .chain(r.peers.iter().map(|(k, v)| (k.clone(), v)));
    for (id, m) in rows {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&id),
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
