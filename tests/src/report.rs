//! Reading a `--compare-report` directory's page: the data the page's
//! script draws from is embedded in it as JSON.

use std::path::Path;

/// The JSON `DIR/report.html` carries.
pub fn page_data(dir: &Path) -> serde_json::Value {
    let page = std::fs::read_to_string(dir.join("report.html")).expect("the report page");
    let start_tag = r#"<script id="data" type="application/json">"#;
    let start = page.find(start_tag).expect("the page's data") + start_tag.len();
    let end = start
        + page[start..]
            .find("</script>")
            .expect("the end of the data");
    serde_json::from_str(&page[start..end].replace("<\\/", "</")).expect("the data is JSON")
}

/// The page's row for `endpoint` (`METHOD /path`) answered `status` in
/// production: (compared, equal, different, noise).
pub fn endpoint_row(data: &serde_json::Value, endpoint: &str, status: u64) -> Option<[u64; 4]> {
    data["endpoints"]
        .as_array()?
        .iter()
        .find(|e| e["endpoint"] == endpoint && e["status"] == status)
        .map(|e| {
            ["compared", "equal", "different", "noise"].map(|k| e[k].as_u64().unwrap_or(u64::MAX))
        })
}
