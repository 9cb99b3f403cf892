//! The audit's reports: JSON for machines, Markdown for a published README, and one HTML file
//! with its charts drawn as inline SVG (no scripts, no external files), for people.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::{Audited, Status, Summary};
use crate::state::{State, StateError};

/// Statuses in the order reports show them, with their labels and colours.
const STATUSES: [(&str, &str, &str); 5] = [
    (Status::Recoverable.name(), "recoverable bit for bit", "#2e7d32"),
    (Status::BinaryCacheOnly.name(), "only in a binary cache", "#1565c0"),
    (Status::ArchivedNotRecoverable.name(), "archived, not recoverable", "#f9a825"),
    (Status::NotArchived.name(), "not archived", "#c62828"),
    (Status::CannotTell.name(), "cannot tell", "#9e9e9e"),
];

/// A fetch made to check the audit's word.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub index: usize,
    pub integrity: String,
    pub ok: bool,
    pub detail: String,
}

/// A whole audit.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Unix seconds.
    pub generated_at: i64,
    /// API requests this audit sent.
    pub archive_requests: u64,
    /// And the sample's fetches.
    pub verification_requests: u64,
    pub summary: Summary,
    /// Change in counts by status since the previous audit (of the same file if there was one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verified: Vec<Verification>,
    pub sources: Vec<Audited>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_revision: Option<String>,
    /// Status → (before, now).
    pub by_status: BTreeMap<String, (usize, usize)>,
}

impl Change {
    /// Records a finished audit of `file` in `state` and returns the change since the previous
    /// one. An unfinished audit (see [`super::Verdict::is_unfinished`]) is not recorded, since it
    /// is no baseline for the next, and shows no change.
    pub fn record(
        state: &State,
        file: &str,
        revision: Option<&str>,
        summary: &Summary,
        audited: &[Audited],
        now: i64,
    ) -> Result<Option<Change>, StateError> {
        if audited.iter().any(|a| a.verdict.is_unfinished()) {
            return Ok(None);
        }
        let previous = state.record_audit(file, revision, &summary.by_status, now)?;
        Ok(previous.map(|past| Change::between(&past.counts, &summary.by_status, past.revision)))
    }

    fn between(previous: &BTreeMap<String, usize>, now: &BTreeMap<String, usize>, revision: Option<String>) -> Change {
        let by_status = STATUSES
            .iter()
            .map(|(status, ..)| {
                let count = |map: &BTreeMap<String, usize>| map.get(*status).copied().unwrap_or(0);
                ((*status).to_owned(), (count(previous), count(now)))
            })
            .collect();
        Change { previous_revision: revision, by_status }
    }
}

/// How a recoverable source comes back, in words.
fn in_words(detail: &str) -> &str {
    match detail {
        "raw_content" => "the file is archived as it is",
        "nar_extid" => "a NAR-hash ExtID names its tree",
        "bridge_index" => "the bridge index names what the archive has",
        "recipe_and_directory" => "rebuilt from the archived tree and its recipe",
        "git_revision" => "the archived git commit's tree",
        other => other,
    }
}

/// The detail sections in the order of [`STATUSES`], with their labels.
fn details_in_order(summary: &Summary) -> Vec<(&'static str, &'static str, &BTreeMap<String, usize>)> {
    STATUSES
        .iter()
        .filter_map(|(status, label, _)| summary.by_detail.get(*status).map(|details| (*status, *label, details)))
        .collect()
}

/// A facet's values, largest first (hosts read best that way), then by name.
fn by_size(values: &BTreeMap<String, BTreeMap<String, usize>>) -> Vec<(&String, &BTreeMap<String, usize>)> {
    let mut sorted: Vec<_> = values.iter().collect();
    sorted.sort_by(|(a, x), (b, y)| y.values().sum::<usize>().cmp(&x.values().sum::<usize>()).then(a.cmp(b)));
    sorted
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
}

/// Text for a Markdown table cell or heading: nothing in it may end the cell or the line, or
/// become HTML on a renderer that passes HTML through.
fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

impl AuditReport {
    fn title(&self) -> String {
        match &self.revision {
            Some(revision) => format!("Software Heritage coverage of Nixpkgs {revision}"),
            None => format!("Software Heritage coverage of {}", self.file),
        }
    }

    /// The change in a status's count since the previous audit, signed (empty without one).
    fn change_in(&self, status: &str) -> String {
        let change = self.change.as_ref().and_then(|c| c.by_status.get(status));
        change.map(|(before, now)| format!("{:+}", *now as i64 - *before as i64)).unwrap_or_default()
    }

    fn count(&self, status: &str) -> usize {
        self.summary.by_status.get(status).copied().unwrap_or(0)
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = format!("# {}\n\n", md(&self.title()));
        let _ = writeln!(out, "{} sources, {} archive requests.\n", self.summary.sources, self.archive_requests);
        out.push_str("| status | sources | share | change |\n|---|---:|---:|---:|\n");
        for (status, label, _) in STATUSES {
            let n = self.count(status);
            let change = self.change_in(status);
            let _ = writeln!(out, "| {label} | {n} | {:.1} % | {change} |", percent(n, self.summary.sources));
        }
        for (status, label, details) in details_in_order(&self.summary) {
            let _ = writeln!(out, "\n## {label}, by {}\n", if status == "recoverable" { "how" } else { "why" });
            out.push_str("| | sources |\n|---|---:|\n");
            for (detail, n) in details {
                let _ = writeln!(out, "| {} | {n} |", md(in_words(detail)));
            }
        }
        for (facet, title) in
            [("type", "type"), ("hash_mode", "hash mode"), ("file_type", "file type"), ("host", "host")]
        {
            let Some(values) = self.summary.by_facet.get(facet) else { continue };
            let _ = writeln!(out, "\n## By {title}\n");
            let labels: Vec<&str> = STATUSES.iter().map(|(_, label, _)| *label).collect();
            let _ = writeln!(out, "| | sources | {} |", labels.join(" | "));
            let _ = writeln!(out, "|---|---:|{}", "---:|".repeat(labels.len()));
            for (value, counts) in by_size(values) {
                let total: usize = counts.values().sum();
                let cells: Vec<String> =
                    STATUSES.iter().map(|(s, ..)| counts.get(*s).copied().unwrap_or(0).to_string()).collect();
                let _ = writeln!(
                    out,
                    "| {} | {total} | {} |",
                    if value.is_empty() { "(none)" } else { value },
                    cells.join(" | ")
                );
            }
        }
        if !self.verified.is_empty() {
            let ok = self.verified.iter().filter(|v| v.ok).count();
            let _ = writeln!(
                out,
                "\n## Checked by fetching\n\n{ok} of {} sampled sources fetched and verified.",
                self.verified.len()
            );
            for v in self.verified.iter().filter(|v| !v.ok) {
                let _ = writeln!(out, "- {}: {}", md(&v.integrity), md(&v.detail));
            }
        }
        out
    }

    /// The report as one HTML file with inline SVG charts.
    pub fn html(&self) -> String {
        let total = self.summary.sources;
        let mut body = String::new();
        let _ = writeln!(
            body,
            "<p>{total} sources, {} archive requests{}.</p>",
            self.archive_requests,
            if self.summary.cached > 0 {
                format!(", {} verdicts from the cache", self.summary.cached)
            } else {
                String::new()
            }
        );
        body.push_str(&stacked_bar(&self.summary.by_status, total, 720, 36));
        body.push_str("<table id=\"statuses\"><tr><th>status</th><th>sources</th><th>share</th><th>change</th></tr>\n");
        for (status, label, colour) in STATUSES {
            let n = self.count(status);
            let change = self.change_in(status);
            let _ = writeln!(
                body,
                "<tr><td><span class=\"swatch\" style=\"background:{colour}\"></span>{label}</td>\
                 <td class=\"count\" data-status=\"{status}\">{n}</td><td>{:.1} %</td><td>{change}</td></tr>",
                percent(n, total)
            );
        }
        body.push_str("</table>\n");
        for (facet, title) in
            [("type", "type"), ("hash_mode", "hash mode"), ("file_type", "file type"), ("host", "host")]
        {
            let Some(values) = self.summary.by_facet.get(facet) else { continue };
            let _ = writeln!(body, "<h2>By {title}</h2>");
            body.push_str(&facet_chart(values));
        }
        for (status, details) in &self.summary.by_detail {
            let label = STATUSES.iter().find(|(s, ..)| s == status).map_or(status.as_str(), |(_, l, _)| l);
            let _ = writeln!(
                body,
                "<h2>{}, by {}</h2><table>",
                escape(label),
                if status == "recoverable" { "how" } else { "why" }
            );
            for (detail, n) in details {
                let _ = writeln!(body, "<tr><td>{}</td><td>{n}</td></tr>", escape(detail));
            }
            body.push_str("</table>\n");
        }
        if !self.verified.is_empty() {
            let ok = self.verified.iter().filter(|v| v.ok).count();
            let _ = writeln!(
                body,
                "<h2>Checked by fetching</h2><p>{ok} of {} sampled sources fetched and verified.</p>",
                self.verified.len()
            );
        }
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n\
             <style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}}\
             table{{border-collapse:collapse;margin:1em 0}}td,th{{padding:.2em .8em;text-align:left}}\
             td.count{{text-align:right}}.swatch{{display:inline-block;width:.9em;height:.9em;margin-right:.4em}}</style>\n\
             </head><body>\n<h1>{title}</h1>\n{body}</body></html>\n",
            title = escape(&self.title())
        )
    }
}

/// One bar, split by status.
fn stacked_bar(counts: &BTreeMap<String, usize>, total: usize, width: u32, height: u32) -> String {
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"sources by status\">"
    );
    let mut x = 0.0;
    for (status, label, colour) in STATUSES {
        let n = counts.get(status).copied().unwrap_or(0);
        if n == 0 || total == 0 {
            continue;
        }
        let w = n as f64 * f64::from(width) / total as f64;
        let _ = write!(
            svg,
            "<rect x=\"{x:.2}\" y=\"0\" width=\"{w:.2}\" height=\"{height}\" fill=\"{colour}\"><title>{label}: {n}</title></rect>"
        );
        x += w;
    }
    svg.push_str("</svg>\n");
    svg
}

/// A bar per value of a facet, each split by status, scaled to the largest.
fn facet_chart(values: &BTreeMap<String, BTreeMap<String, usize>>) -> String {
    let (label_width, bar_width, row) = (180.0, 520.0, 22.0);
    let largest = values.values().map(|c| c.values().sum::<usize>()).max().unwrap_or(1).max(1);
    let height = row * values.len() as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-size=\"12\">",
        label_width + bar_width + 60.0
    );
    for (i, (value, counts)) in by_size(values).into_iter().enumerate() {
        let y = i as f64 * row;
        let total: usize = counts.values().sum();
        let name = if value.is_empty() { "(none)" } else { value };
        let _ = write!(
            svg,
            "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            label_width - 6.0,
            y + 15.0,
            escape(name)
        );
        let mut x = label_width;
        for (status, label, colour) in STATUSES {
            let n = counts.get(status).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let w = n as f64 * bar_width / largest as f64;
            let _ = write!(
                svg,
                "<rect x=\"{x:.2}\" y=\"{:.1}\" width=\"{w:.2}\" height=\"{:.1}\" fill=\"{colour}\"><title>{}: {label}: {n}</title></rect>",
                y + 3.0,
                row - 6.0,
                escape(name)
            );
            x += w;
        }
        let _ = write!(svg, "<text x=\"{:.1}\" y=\"{:.1}\">{total}</text>", x + 4.0, y + 15.0);
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_cells_cannot_break_out() {
        assert_eq!(md("a|b\n<script>x</script> & [y](z)"), "a\\|b &lt;script&gt;x&lt;/script&gt; &amp; \\[y\\](z)");
    }
}
