//! The status page: server-rendered HTML with inline CSS and SVG charts, no
//! JavaScript. Every domain's state in colour and in words, its lookup budget, its
//! published chain and its recent upstream changes; a page per domain.

use std::fmt::Write;

use super::view::{PolicyView, StatusView};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.35em .5em;\
text-align:left;vertical-align:top}th{background:#f4f4f4}code{font-size:.85em;word-break:break-all}\
.state{font-weight:600;padding:.1em .5em;border-radius:.3em;color:#fff}.ok{background:#2e7d32}\
.stale{background:#ef6c00}.error{background:#c62828}.pending{background:#757575}\
.summary span{margin-right:1.5em}td:nth-child(4){white-space:nowrap}h2{margin-top:1.5em}.muted{color:#777}";

/// The overview: counts, every domain, and the charts.
pub fn index(view: &StatusView, qps_chart: &str) -> String {
    let mut body = String::new();
    let _ = write!(body, "<h1>spfd</h1><p class=\"summary\">");
    let _ = write!(body, "<span>snapshot generation {}</span>", view.generation);
    let _ = write!(
        body,
        "<span>{}</span>",
        if view.ready { "ready" } else { "loading" }
    );
    for (state, n) in view.counts() {
        let _ = write!(body, "<span><b class=\"state {state}\">{state}</b> {n}</span>");
    }
    body.push_str("</p>");
    files_with_errors(&mut body, view);
    body.push_str(
        "<h2>Domains</h2><table><tr><th>domain</th><th>state</th><th>SPF</th>\
                   <th>lookups</th><th>published</th><th>DMARC</th><th>last change</th></tr>",
    );
    for p in &view.policies {
        row(&mut body, p, view.now);
    }
    body.push_str("</table><h2>Responses per second, last hour</h2>");
    body.push_str(qps_chart);
    body.push_str("<h2>Lookups per domain</h2>");
    body.push_str(&lookups_chart(view));
    body.push_str("<h2>Expansions in the last hour</h2>");
    body.push_str(&timeline_chart(view));
    document("spfd status", &body)
}

fn files_with_errors(body: &mut String, view: &StatusView) {
    if view.unserved_files.is_empty() {
        return;
    }
    body.push_str("<h2>Files not served</h2><ul>");
    for f in &view.unserved_files {
        let _ = write!(
            body,
            "<li><code>{}</code>: {}</li>",
            esc(&f.file),
            esc(&f.errors.join("; "))
        );
    }
    body.push_str("</ul>");
}

fn row(body: &mut String, p: &PolicyView, now: u64) {
    let head = p.published.first().map_or("", |r| r.text.as_str());
    let parts = p.published.len().saturating_sub(1);
    let more = if parts > 0 {
        format!(" <span class=\"muted\">+{parts} parts</span>")
    } else {
        String::new()
    };
    let _ = write!(
        body,
        "<tr><td><a href=\"/domain/{d}\">{d}</a></td><td>{state}</td><td>{mode}</td><td>{budget}</td>\
         <td><code>{head}</code>{more}</td><td>{dmarc}</td><td>{change}</td></tr>",
        d = esc(&p.domain),
        state = badge(p.state),
        mode = p.spf_mode,
        budget = budget(p.lookups),
        head = esc(head),
        dmarc = esc(p.dmarc_policy.as_deref().unwrap_or("-")),
        change = p.last_change.map_or("-".to_string(), |t| ago(now, t)),
    );
}

/// One domain: everything `/status` says of it.
pub fn domain(p: &PolicyView, view: &StatusView) -> String {
    let mut body = format!(
        "<p><a href=\"/\">all domains</a></p><h1>{}</h1><p>{} zone <code>{}</code>, SPF {} mode, \
         lookups {}, file <code>{}</code></p>",
        esc(&p.domain),
        badge(p.state),
        esc(&p.zone),
        p.spf_mode,
        budget(p.lookups),
        esc(&p.file)
    );
    if let Some(error) = &p.error {
        let _ = write!(body, "<p><b>Error:</b> {}</p>", esc(error));
    }
    body.push_str("<h2>Published</h2><table><tr><th>name</th><th>TXT</th></tr>");
    for r in &p.published {
        let _ = write!(
            body,
            "<tr><td><code>{}</code></td><td><code>{}</code></td></tr>",
            esc(&r.name),
            esc(&r.text)
        );
    }
    body.push_str("</table><h2>Upstream changes</h2>");
    changes(&mut body, p, view.now);
    body.push_str("<h2>Held down</h2>");
    if p.held.is_empty() {
        body.push_str("<p class=\"muted\">nothing</p>");
    }
    for h in &p.held {
        let _ = write!(
            body,
            "<p><code>{}</code> from <code>{}</code>, until {}</p>",
            esc(&h.range),
            esc(&h.term),
            in_time(view.now, h.until)
        );
    }
    let _ = write!(
        body,
        "<h2>DMARC and DKIM</h2><p>p={} · selectors: {}</p>",
        esc(p.dmarc_policy.as_deref().unwrap_or("(none)")),
        esc(&p.dkim_selectors.join(", "))
    );
    reports(&mut body, p);
    document(&format!("spfd: {}", p.domain), &body)
}

/// The DMARC report summary and the advice, when the domain has reports.
fn reports(body: &mut String, p: &PolicyView) {
    body.push_str("<h2>DMARC reports</h2>");
    let Some(r) = &p.reports else {
        body.push_str("<p class=\"muted\">no aggregate reports stored for this domain</p>");
        return;
    };
    let s = &r.summary;
    let share = if s.messages == 0 {
        0.0
    } else {
        100.0 * s.dmarc_pass as f64 / s.messages as f64
    };
    let _ = write!(
        body,
        "<p>{} reports from {} receivers over {} days: {} messages, {share:.1}% passing DMARC</p>",
        s.reports, s.receivers, s.days, s.messages
    );
    let counted = if s.trust == "all" {
        "counted"
    } else {
        "not counted"
    };
    let _ = write!(
        body,
        "<p class=\"muted\">{} reporting organisations; {} unverified reports ({} messages) {counted}; \
         {} conflicting reports; {} rows with an impossible count skipped</p>",
        s.organisations, s.unverified_reports, s.unverified_messages, s.conflicts, s.error_rows
    );
    body.push_str("<table><tr><th>source</th><th>messages</th><th>class</th></tr>");
    for src in s.sources.iter().take(20) {
        let class = serde_json::to_value(src.class)
            .ok()
            .and_then(|v| v.as_str().map(String::from));
        let _ = write!(
            body,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(&src.ip),
            src.messages,
            esc(class.as_deref().unwrap_or("-"))
        );
    }
    body.push_str("</table>");
    for (what, step) in [("SPF", &r.advice.spf), ("DMARC", &r.advice.dmarc)] {
        let next = step.next.as_deref().unwrap_or("nothing: at the goal");
        let verdict = if step.ready { "ready" } else { "not yet" };
        let _ = write!(
            body,
            "<p><b>{what}</b>: {} → {}: <b>{verdict}</b>{}</p>",
            esc(&step.current),
            esc(next),
            if step.reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", esc(&step.reasons.join("; ")))
            }
        );
    }
}

fn changes(body: &mut String, p: &PolicyView, now: u64) {
    if p.changes.is_empty() {
        body.push_str("<p class=\"muted\">none seen since spfd started</p>");
    }
    for c in &p.changes {
        let _ = write!(
            body,
            "<p>{} <code>{}</code>: added <code>{}</code>, removed <code>{}</code></p>",
            ago(now, c.at),
            esc(&c.term),
            esc(&c.added.join(" ")),
            esc(&c.removed.join(" "))
        );
    }
}

pub fn not_found(domain: &str) -> String {
    document(
        "spfd: not found",
        &format!(
            "<p><a href=\"/\">all domains</a></p><p>No policy for {}.</p>",
            esc(domain)
        ),
    )
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <meta http-equiv=\"refresh\" content=\"30\"><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    )
}

fn badge(state: &str) -> String {
    format!("<span class=\"state {state}\">{state}</span>")
}

/// "7/10" with a small bar, red past 8.
fn budget(lookups: Option<usize>) -> String {
    let Some(n) = lookups else { return "-".to_string() };
    let colour = if n > 8 { "#c62828" } else { "#2e7d32" };
    let width = n.min(10) * 6;
    format!(
        "<svg width=\"60\" height=\"10\" role=\"img\" aria-label=\"{n} of 10\"><rect width=\"60\" height=\"10\" \
         fill=\"#eee\"/><rect width=\"{width}\" height=\"10\" fill=\"{colour}\"/></svg> {n}/10"
    )
}

/// A horizontal bar per domain (the 40 that spend most), out of 10 lookups.
fn lookups_chart(view: &StatusView) -> String {
    let mut rows: Vec<(&str, usize)> = view
        .policies
        .iter()
        .filter_map(|p| Some((p.domain.as_str(), p.lookups?)))
        .collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    rows.truncate(40);
    let height = rows.len() * 18 + 20;
    let mut svg =
        format!("<svg width=\"640\" height=\"{height}\" role=\"img\" aria-label=\"lookups per domain\">");
    for (i, (domain, n)) in rows.iter().enumerate() {
        let y = i * 18;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text><rect x=\"240\" y=\"{}\" width=\"{}\" height=\"14\" \
             fill=\"{}\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">{n}</text>",
            y + 12,
            esc(domain),
            y,
            n * 36,
            if *n > 8 { "#c62828" } else { "#1565c0" },
            248 + n * 36,
            y + 12
        );
    }
    let _ = write!(
        svg,
        "<line x1=\"600\" y1=\"0\" x2=\"600\" y2=\"{height}\" stroke=\"#c62828\" stroke-dasharray=\"4\"/>"
    );
    svg.push_str("</svg>");
    svg
}

/// Colours of the rcodes drawn (others are summed as "other").
const RCODE_COLOURS: [(&str, &str); 4] = [
    ("NOERROR", "#2e7d32"),
    ("NXDOMAIN", "#1565c0"),
    ("REFUSED", "#ef6c00"),
    ("other", "#c62828"),
];

/// A line per rcode: responses per second over the last hour (a sample every 10 s).
pub fn qps_chart(history: &super::history::History) -> String {
    if history.is_empty() {
        return "<p class=\"muted\">the first sample is taken 10 s after start</p>".to_string();
    }
    let series: Vec<Vec<f64>> = RCODE_COLOURS
        .iter()
        .map(|(rcode, _)| {
            history
                .samples()
                .map(|s| match *rcode {
                    "other" => s
                        .iter()
                        .filter(|(k, _)| !RCODE_COLOURS.iter().any(|(r, _)| r == k))
                        .map(|(_, v)| v)
                        .sum(),
                    r => s.get(r).copied().unwrap_or(0.0),
                })
                .collect()
        })
        .collect();
    let top = series.iter().flatten().fold(1.0f64, |a, b| a.max(*b));
    let (width, height) = (600.0, 120.0);
    let step = width / 359.0;
    let offset = 360 - history.len();
    let mut svg = format!(
        "<svg width=\"640\" height=\"150\" role=\"img\" aria-label=\"responses per second\">\
         <line x1=\"0\" y1=\"{height}\" x2=\"{width}\" y2=\"{height}\" stroke=\"#999\"/>\
         <text x=\"0\" y=\"12\" font-size=\"11\">{top:.0}/s</text>\
         <text x=\"0\" y=\"146\" font-size=\"11\">60 min ago</text><text x=\"570\" y=\"146\" font-size=\"11\">now</text>"
    );
    for ((_, colour), values) in RCODE_COLOURS.iter().zip(&series) {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                format!(
                    "{:.1},{:.1}",
                    (offset + i) as f64 * step,
                    height - v / top * (height - 16.0)
                )
            })
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    let legend: Vec<String> = RCODE_COLOURS
        .iter()
        .map(|(rcode, colour)| format!("<span style=\"color:{colour}\">&#9632; {rcode}</span>"))
        .collect();
    svg.push_str("</svg>");
    format!("{svg}<p class=\"summary\">{}</p>", legend.join(" "))
}

/// One mark per domain at the time of its last expansion, over the last hour.
fn timeline_chart(view: &StatusView) -> String {
    let mut svg = String::from(
        "<svg width=\"640\" height=\"60\" role=\"img\" aria-label=\"expansions in the last hour\">\
         <line x1=\"0\" y1=\"40\" x2=\"600\" y2=\"40\" stroke=\"#999\"/>\
         <text x=\"0\" y=\"56\" font-size=\"11\">60 min ago</text><text x=\"570\" y=\"56\" font-size=\"11\">now</text>",
    );
    for p in &view.policies {
        let Some(at) = p.last_expansion else { continue };
        let age = view.now.saturating_sub(at);
        if age > 3600 {
            continue;
        }
        let x = 600 - age * 600 / 3600;
        let colour = match p.state {
            "error" => "#c62828",
            "stale" => "#ef6c00",
            _ => "#2e7d32",
        };
        let _ = write!(
            svg,
            "<line x1=\"{x}\" y1=\"10\" x2=\"{x}\" y2=\"40\" stroke=\"{colour}\"/>"
        );
    }
    svg.push_str("</svg>");
    svg
}

fn ago(now: u64, at: u64) -> String {
    let secs = now.saturating_sub(at);
    match secs {
        0..120 => format!("{secs} s ago"),
        120..7200 => format!("{} min ago", secs / 60),
        7200..172_800 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

fn in_time(now: u64, at: u64) -> String {
    let secs = at.saturating_sub(now);
    if secs < 7200 {
        format!("in {} min", secs / 60)
    } else {
        format!("in {} h", secs / 3600)
    }
}

/// HTML-escapes text for element content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
