//! Two HTTP responses compared: status, headers (except ignored ones),
//! and body (JSON structurally when both are JSON, else byte for byte).

use super::{Difference, IgnoreRules, Outcome, http::HttpResponse, json};

/// The offset of the first byte where `a` and `b` differ (the shorter
/// one's length when one is a prefix of the other); `None` when equal.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len())),
    )
}

/// Header names whose values depend on the body's bytes: left out when the
/// bodies compare equal as JSON (their meaning is the same), and when the
/// bodies differ (a consequence of that difference, counted once, as the
/// body's).
const BODY_BYTES_HEADERS: [&str; 3] = ["content-length", "etag", "content-md5"];

pub fn compare_http(
    production: &HttpResponse,
    target: &HttpResponse,
    rules: &IgnoreRules,
) -> Outcome {
    let mut diffs = Vec::new();
    if production.status != target.status {
        diffs.push(Difference::Status {
            production: production.status,
            target: target.status,
        });
    }
    // Identical bytes are equal however they would parse (the common case:
    // no JSON parse at all).
    let json = if production.body == target.body {
        Some(None)
    } else {
        json::compare(&production.body, &target.body, &rules.json_paths)
    };
    match &json {
        Some(None) => {}
        Some(Some(path)) => diffs.push(Difference::JsonField { path: path.clone() }),
        None => {
            if let Some(offset) = first_difference(&production.body, &target.body) {
                diffs.push(Difference::Bytes {
                    offset,
                    production_len: production.body.len(),
                    target_len: target.body.len(),
                });
            }
        }
    }
    let body_bytes_differ = production.body != target.body;
    let mut names: Vec<&str> = production
        .headers
        .iter()
        .chain(&target.headers)
        .map(|(n, _)| n.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        if rules.headers.iter().any(|h| h == name)
            || (body_bytes_differ && BODY_BYTES_HEADERS.contains(&name))
        {
            continue;
        }
        let (p, t) = (production.header(name), target.header(name));
        if p != t {
            diffs.push(Difference::Header {
                name: name.to_owned(),
                production: p,
                target: t,
            });
        }
    }
    if diffs.is_empty() {
        Outcome::Equal
    } else {
        Outcome::Different(diffs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
            truncated: false,
        }
    }

    #[test]
    fn status_headers_and_bodies_are_each_compared() {
        let rules = IgnoreRules::with_defaults();
        let prod = resp(200, &[("date", "Mon"), ("x-a", "1")], "hello");
        let same = resp(200, &[("date", "Tue"), ("x-a", "1")], "hello");
        assert_eq!(
            compare_http(&prod, &same, &rules),
            Outcome::Equal,
            "date is ignored"
        );
        let other = resp(404, &[("x-a", "1"), ("x-b", "2")], "hellO");
        let Outcome::Different(diffs) = compare_http(&prod, &other, &rules) else {
            panic!("different")
        };
        assert_eq!(
            diffs,
            [
                Difference::Status {
                    production: 200,
                    target: 404
                },
                Difference::Bytes {
                    offset: 4,
                    production_len: 5,
                    target_len: 5
                },
                Difference::Header {
                    name: "x-b".into(),
                    production: None,
                    target: Some("2".into())
                },
            ]
        );
    }

    #[test]
    fn reordered_json_is_equal_whatever_its_length_and_etag_say() {
        let rules = IgnoreRules::with_defaults();
        let prod = resp(
            200,
            &[("content-length", "16"), ("etag", "a")],
            r#"{"a":1,"b":[1,2]}"#,
        );
        let tgt = resp(
            200,
            &[("content-length", "20"), ("etag", "b")],
            r#"{ "b": [1, 2], "a": 1 }"#,
        );
        assert_eq!(compare_http(&prod, &tgt, &rules), Outcome::Equal);
    }

    #[test]
    fn a_body_difference_is_one_difference_not_also_its_length() {
        let rules = IgnoreRules::with_defaults();
        let prod = resp(200, &[("content-length", "4")], "9.90");
        let tgt = resp(200, &[("content-length", "2"), ("x-new", "1")], "10");
        let Outcome::Different(d) = compare_http(&prod, &tgt, &rules) else {
            panic!("different")
        };
        let kinds: Vec<&str> = d.iter().map(Difference::kind).collect();
        assert_eq!(kinds, ["body", "header"], "{d:?}");
        assert!(matches!(&d[1], Difference::Header { name, .. } if name == "x-new"));
    }
}
