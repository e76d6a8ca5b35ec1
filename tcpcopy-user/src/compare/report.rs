//! `--compare-report DIR/report.html`: one self-contained page (no
//! network, no files beside it). The data goes in as JSON; the page's own
//! script draws the totals, the differences by production status, the
//! target's response-time distribution (an SVG bar chart) and the first
//! differing exchanges side by side.

use std::{collections::BTreeMap, io, path::Path};

use super::CompareCounts;

/// Differing exchanges the page shows at most (the JSON-lines file has
/// them all).
pub const SHOWN: usize = 50;

/// What the page shows.
#[derive(Debug, Default)]
pub struct ReportData {
    pub counts: CompareCounts,
    /// Differences by the production response's status (HTTP), by kind.
    pub by_status: BTreeMap<u16, BTreeMap<String, u64>>,
    /// The first differing exchanges (the JSON-lines records).
    pub shown: Vec<serde_json::Value>,
    /// The target's response times: (upper bound in µs, count).
    pub target_latency_us: Vec<(u64, u64)>,
}

impl ReportData {
    /// Takes one JSON-lines record into the page's data.
    pub fn add_record(&mut self, line: &str) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            return;
        };
        if let Some(status) = v["production"]["status"].as_u64() {
            let kinds = self.by_status.entry(status as u16).or_default();
            for k in v["kinds"].as_array().into_iter().flatten() {
                *kinds
                    .entry(k.as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
        }
        if self.shown.len() < SHOWN {
            self.shown.push(v);
        }
    }

    fn json(&self) -> serde_json::Value {
        let c = &self.counts;
        serde_json::json!({
            "counts": {
                "compared": c.compared, "equal": c.equal, "different": c.different,
                "status": c.status, "header": c.header, "body": c.body,
                "truncated": c.truncated, "unparsed": c.unparsed, "gaps": c.gaps,
            },
            "by_status": self.by_status,
            "shown": self.shown,
            "target_latency_us": self.target_latency_us,
        })
    }
}

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tcpcopy: target vs production</title>
<style>
body { font: 14px/1.4 sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th { background: #f3f3f3; } .diff { display: flex; gap: 12px; margin: 10px 0 24px; }
.diff pre { flex: 1; background: #f8f8f8; border: 1px solid #ddd; padding: 8px; overflow: auto; max-height: 320px; margin: 0; }
.bad { color: #b00020; } .good { color: #0a7d32; }
</style></head><body>
<h1>tcpcopy: does the target answer like production?</h1>
<div id="totals">rendering...</div>
<h2>Differences by production status</h2><div id="by-status"></div>
<h2>Target response time</h2><div id="latency"></div>
<h2>First differing exchanges</h2><div id="diffs"></div>
<script id="data" type="application/json">__DATA__</script>
<script>
const d = JSON.parse(document.getElementById('data').textContent);
const c = d.counts;
const esc = s => String(s).replace(/[&<>]/g, ch => ({'&':'&amp;','<':'&lt;','>':'&gt;'}[ch]));
document.getElementById('totals').innerHTML =
  `<p>compared <b id="compared">${c.compared}</b> responses: ` +
  `<span class="good"><b id="equal">${c.equal}</b> equal</span>, ` +
  `<span class="bad"><b id="different">${c.different}</b> different</span> ` +
  `(status ${c.status}, headers ${c.header}, body ${c.body}); ` +
  `${c.truncated} cut at the cap, ${c.unparsed} sessions not parsed, ${c.gaps} with a stream hole.</p>`;
const kinds = ['status', 'header', 'body'];
let rows = Object.entries(d.by_status).map(([st, k]) =>
  `<tr><td>${st}</td>${kinds.map(x => `<td>${k[x] || 0}</td>`).join('')}</tr>`).join('');
document.getElementById('by-status').innerHTML = rows
  ? `<table><tr><th>status</th>${kinds.map(k => `<th>${k}</th>`).join('')}</tr>${rows}</table>`
  : '<p>none</p>';
const lat = d.target_latency_us;
if (lat.length) {
  const max = Math.max(...lat.map(b => b[1]));
  const w = 28, h = 160;
  const bars = lat.map((b, i) => {
    const bh = Math.max(1, Math.round(h * b[1] / max));
    return `<rect x="${i * w + 4}" y="${h - bh + 10}" width="${w - 6}" height="${bh}" fill="#3a6ea5">` +
      `<title>&lt;= ${b[0]} us: ${b[1]}</title></rect>` +
      `<text x="${i * w + 4}" y="${h + 26}" font-size="9">${b[0] >= 1000 ? (b[0] / 1000).toFixed(1) + 'ms' : b[0] + 'us'}</text>`;
  }).join('');
  document.getElementById('latency').innerHTML =
    `<svg width="${lat.length * w + 10}" height="${h + 40}">${bars}</svg>` +
    '<p>bars: responses per time bucket (first request byte sent to first response byte reported)</p>';
} else {
  document.getElementById('latency').innerHTML = '<p>no responses timed</p>';
}
const side = s => s.status !== undefined
  ? `${s.status}\n${(s.headers || []).map(h => h[0] + ': ' + h[1]).join('\n')}\n\n${s.body}`
  : s.bytes;
document.getElementById('diffs').innerHTML = d.shown.length ? d.shown.map(x =>
  `<p><b>${esc(x.client)}</b> exchange ${x.exchange}: <span class="bad">${esc(x.differences.join('; '))}</span></p>` +
  `<div class="diff"><pre>production\n\n${esc(side(x.production))}</pre>` +
  `<pre>target\n\n${esc(side(x.target_response))}</pre></div>`).join('') : '<p>none</p>';
</script></body></html>
"##;

/// Writes `dir/report.html`.
pub fn write_html(dir: &Path, data: &ReportData) -> io::Result<()> {
    // `</` inside the JSON would end the script element early.
    let json = data.json().to_string().replace("</", "<\\/");
    std::fs::write(dir.join("report.html"), PAGE.replace("__DATA__", &json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_carries_the_data_and_no_record_can_end_its_script() {
        let mut data = ReportData::default();
        data.counts.compared = 3;
        data.add_record(
            r#"{"client":"1.2.3.4:5","exchange":0,"differences":["x"],"kinds":["status"],
                "production":{"status":200,"body":"</script><b>"},"target_response":{"status":503}}"#,
        );
        assert_eq!(data.by_status[&200]["status"], 1);
        let dir = std::env::temp_dir().join(format!("report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_html(&dir, &data).unwrap();
        let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
        assert!(page.contains(r#""compared":3"#));
        assert_eq!(page.matches("</script>").count(), 2, "only the page's own");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
