//! `--compare-report DIR`: `differences.jsonl` (one JSON object per
//! differing exchange, appended as workers find them) and `report.html`,
//! one self-contained page (no network, no files beside it), rewritten
//! while the replay runs and at its end. The data goes in as JSON; the
//! page's own script draws the totals, the differences by production
//! status, production's and the target's response-time distributions (an
//! SVG bar chart) and the first differing exchanges side by side.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use super::CompareCounts;

/// Differing exchanges the page shows at most (the JSON-lines file has
/// them all).
pub const SHOWN: usize = 50;

/// Judged exchanges of one endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointCounts {
    pub compared: u64,
    pub equal: u64,
    pub different: u64,
    pub noise: u64,
}

impl EndpointCounts {
    pub fn add(&mut self, o: &Self) {
        self.compared += o.compared;
        self.equal += o.equal;
        self.different += o.different;
        self.noise += o.noise;
    }
}

/// Endpoints the page keeps apart (beyond, as `(other)`).
const MAX_PAGE_ENDPOINTS: usize = 10_000;
/// Endpoints the page lists (most differences first).
pub const SHOWN_ENDPOINTS: usize = 100;

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
    /// Production's response times, from the capture: (upper bound in
    /// µs, count).
    pub production_latency_us: Vec<(u64, u64)>,
    /// Judged exchanges by (endpoint, production's status).
    pub endpoints: BTreeMap<(String, u16), EndpointCounts>,
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
                "noise": c.noise, "unconfirmed": c.unconfirmed, "unaligned": c.unaligned, "behind": c.behind,
            },
            "by_status": self.by_status,
            "shown": self.shown,
            "target_latency_us": self.target_latency_us,
            "production_latency_us": self.production_latency_us,
            "endpoints": self.top_endpoints(),
            "endpoint_count": self.endpoints.len(),
        })
    }

    /// Takes counts of judged exchanges by (endpoint, status).
    pub fn add_endpoints(
        &mut self,
        counts: impl IntoIterator<Item = ((String, u16), EndpointCounts)>,
    ) {
        for (key, c) in counts {
            let key = if self.endpoints.len() >= MAX_PAGE_ENDPOINTS
                && !self.endpoints.contains_key(&key)
            {
                ("(other)".to_owned(), 0)
            } else {
                key
            };
            self.endpoints.entry(key).or_default().add(&c);
        }
    }

    /// The endpoints the page lists: most differences first, then most
    /// compared.
    fn top_endpoints(&self) -> Vec<serde_json::Value> {
        let mut all: Vec<_> = self.endpoints.iter().collect();
        all.sort_by(|a, b| {
            (b.1.different, b.1.compared)
                .cmp(&(a.1.different, a.1.compared))
                .then_with(|| a.0.cmp(b.0))
        });
        all.into_iter()
            .take(SHOWN_ENDPOINTS)
            .map(|((endpoint, status), c)| {
                serde_json::json!({
                    "endpoint": endpoint, "status": status, "compared": c.compared,
                    "equal": c.equal, "different": c.different, "noise": c.noise,
                })
            })
            .collect()
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
<h2>Differences by production status and kind</h2><div id="by-status"></div>
<h2>By endpoint and production status</h2><div id="endpoints"></div>
<h2>Response time, production and target</h2><div id="latency"></div>
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
  `(status ${c.status}, headers ${c.header}, body ${c.body})` +
  (c.noise + c.unconfirmed ? `, <b id="noise">${c.noise}</b> noise (the baseline differed alike; not counted different), ${c.unconfirmed} of the different without the baseline's answer` : '') + '; ' +
  `${c.truncated} cut at the cap, ${c.unparsed} sessions not parsed, ${c.gaps} with a stream hole, ${c.unaligned} pipelined in bytes mode, ${c.behind} too far behind production.</p>`;
const kinds = ['status', 'header', 'body'];
let rows = Object.entries(d.by_status).map(([st, k]) =>
  `<tr><td>${st}</td>${kinds.map(x => `<td>${k[x] || 0}</td>`).join('')}</tr>`).join('');
document.getElementById('by-status').innerHTML = rows
  ? `<table><tr><th>production status</th>${kinds.map(k => `<th>${k}</th>`).join('')}</tr>${rows}</table>`
  : '<p>none</p>';
document.getElementById('endpoints').innerHTML = d.endpoints.length
  ? `<table><tr><th>endpoint</th><th>status</th><th>compared</th><th>equal</th><th>different</th><th>noise</th></tr>` +
    d.endpoints.map(e => `<tr><td style="text-align:left">${esc(e.endpoint)}</td><td>${e.status || '-'}</td><td>${e.compared}</td>` +
      `<td>${e.equal}</td><td class="${e.different ? 'bad' : ''}">${e.different}</td><td>${e.noise}</td></tr>`).join('') +
    `</table><p>${d.endpoint_count > d.endpoints.length ? `the ${d.endpoints.length} with the most differences of ${d.endpoint_count}` : ''}</p>`
  : '<p>none</p>';
const series = [['production', d.production_latency_us, '#8a8a8a'], ['target', d.target_latency_us, '#3a6ea5']];
const bounds = [...new Set(series.flatMap(s => s[1].map(b => b[0])))].sort((a, b) => a - b);
if (bounds.length) {
  const share = (s, ub) => { const n = s.reduce((t, b) => t + b[1], 0); const b = s.find(x => x[0] === ub); return n && b ? b[1] / n : 0; };
  const max = Math.max(...bounds.flatMap(ub => series.map(s => share(s[1], ub))));
  const w = 30, h = 160, bw = 12;
  const bars = bounds.map((ub, i) => series.map((s, k) => {
    const v = share(s[1], ub), bh = v ? Math.max(1, Math.round(h * v / max)) : 0;
    return `<rect class="bar-${s[0]}" x="${i * w + 4 + k * bw}" y="${h - bh + 10}" width="${bw - 1}" height="${bh}" fill="${s[2]}">` +
      `<title>${s[0]} &lt;= ${ub} us: ${(100 * v).toFixed(1)} %</title></rect>`;
  }).join('') +
    `<text x="${i * w + 4}" y="${h + 26}" font-size="9">${ub >= 1000 ? (ub / 1000).toFixed(1) + 'ms' : ub + 'us'}</text>`).join('');
  const count = s => s.reduce((t, b) => t + b[1], 0);
  document.getElementById('latency').innerHTML =
    `<svg width="${bounds.length * w + 10}" height="${h + 40}">${bars}</svg>` +
    `<p>share of responses per time bucket, first request byte to first response byte: ` +
    `<span style="color:#8a8a8a">production</span> (<b id="production-timed">${count(d.production_latency_us)}</b>, from the capture), ` +
    `<span style="color:#3a6ea5">target</span> (<b id="target-timed">${count(d.target_latency_us)}</b>, as replayed)</p>`;
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

/// `--compare-report DIR`, shared by the workers: they append the
/// differences they find; the daemon rewrites the page.
pub type SharedReport = Arc<Mutex<ReportWriter>>;

/// The report directory's two files.
pub struct ReportWriter {
    dir: PathBuf,
    /// `None` after a write error (logged once; the replay goes on).
    differences: Option<BufWriter<File>>,
    data: ReportData,
}

impl ReportWriter {
    /// Creates `dir` (if needed) and an empty `differences.jsonl` in it.
    pub fn create(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let file = File::create(dir.join("differences.jsonl"))?;
        Ok(Self {
            dir: dir.to_owned(),
            differences: Some(BufWriter::new(file)),
            data: ReportData::default(),
        })
    }

    pub fn shared(self) -> SharedReport {
        Arc::new(Mutex::new(self))
    }

    /// Takes one worker's per-endpoint counts.
    pub fn add_endpoints(
        &mut self,
        counts: impl IntoIterator<Item = ((String, u16), EndpointCounts)>,
    ) {
        self.data.add_endpoints(counts);
    }

    /// Appends differing exchanges (JSON lines) to the file and the page.
    pub fn add(&mut self, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        for line in lines {
            self.data.add_record(line);
        }
        let Some(out) = self.differences.as_mut() else {
            return;
        };
        let result = lines
            .iter()
            .try_for_each(|line| writeln!(out, "{line}"))
            .and_then(|()| out.flush());
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot write the differences file; it ends here");
            self.differences = None;
        }
    }

    /// Rewrites the page with the totals and response times as they are.
    pub fn write_page(
        &mut self,
        counts: CompareCounts,
        target_latency_us: Vec<(u64, u64)>,
        production_latency_us: Vec<(u64, u64)>,
    ) -> io::Result<PathBuf> {
        self.data.counts = counts;
        self.data.target_latency_us = target_latency_us;
        self.data.production_latency_us = production_latency_us;
        write_html(&self.dir, &self.data)?;
        Ok(self.dir.join("report.html"))
    }
}

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
