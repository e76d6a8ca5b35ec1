//! JSON bodies compared by structure: object member order never matters,
//! and fields named by ignore paths are left out on both sides.
//!
//! A path is dot-separated member names, each optionally followed by
//! `[*]` (every element of an array) or `[N]` (one element): `meta.ts`,
//! `items[*].id`, `pages[0].etag`.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Member(String),
    AnyIndex,
    Index(usize),
}

/// A field path to ignore (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPath(Vec<Step>);

impl std::str::FromStr for JsonPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a JSON path: expected e.g. meta.ts or items[*].id");
        let mut steps = Vec::new();
        for part in s.split('.') {
            let (name, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if name.is_empty() && rest.is_empty() {
                return Err(bad());
            }
            if !name.is_empty() {
                steps.push(Step::Member(name.to_owned()));
            }
            while !rest.is_empty() {
                let close = rest.find(']').ok_or_else(bad)?;
                let inner = &rest[1..close];
                steps.push(if inner == "*" {
                    Step::AnyIndex
                } else {
                    Step::Index(inner.parse().map_err(|_| bad())?)
                });
                rest = &rest[close + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(bad());
                }
            }
        }
        if steps.is_empty() {
            return Err(bad());
        }
        Ok(Self(steps))
    }
}

/// Removes what `path` names from `value`.
fn strip(value: &mut Value, steps: &[Step]) {
    let Some((first, rest)) = steps.split_first() else {
        return;
    };
    match (first, value) {
        (Step::Member(name), Value::Object(map)) => {
            if rest.is_empty() {
                map.remove(name);
            } else if let Some(v) = map.get_mut(name) {
                strip(v, rest);
            }
        }
        (Step::AnyIndex, Value::Array(items)) => {
            if rest.is_empty() {
                items.clear();
            } else {
                for v in items {
                    strip(v, rest);
                }
            }
        }
        (Step::Index(i), Value::Array(items)) => {
            if rest.is_empty() {
                if *i < items.len() {
                    items[*i] = Value::Null;
                }
            } else if let Some(v) = items.get_mut(*i) {
                strip(v, rest);
            }
        }
        _ => {}
    }
}

/// The first path (in a stable order) where `a` and `b` differ.
fn first_difference(a: &Value, b: &Value, at: &mut String) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let len = at.len();
                if !at.is_empty() {
                    at.push('.');
                }
                at.push_str(k);
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) if first_difference(p, q, at) => return true,
                    (Some(_), Some(_)) => {}
                    _ => return true,
                }
                at.truncate(len);
            }
            false
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                match (x.get(i), y.get(i)) {
                    (Some(p), Some(q)) if first_difference(p, q, at) => return true,
                    (Some(_), Some(_)) => {}
                    _ => return true,
                }
                at.truncate(len);
            }
            false
        }
        _ => a != b,
    }
}

/// Both bodies parsed as JSON: `Some(None)` when they are equal once the
/// ignored paths are left out, `Some(Some(path))` where they first differ
/// (`""`: at the top); `None` when either is not JSON.
pub fn compare(production: &[u8], target: &[u8], ignore: &[JsonPath]) -> Option<Option<String>> {
    let mut a: Value = serde_json::from_slice(production).ok()?;
    let mut b: Value = serde_json::from_slice(target).ok()?;
    for path in ignore {
        strip(&mut a, &path.0);
        strip(&mut b, &path.0);
    }
    // Objects are maps ordered by key: equality ignores member order, and
    // the walk for a path is needed only when they differ.
    if a == b {
        return Some(None);
    }
    let mut at = String::new();
    Some(first_difference(&a, &b, &mut at).then_some(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(p: &[&str]) -> Vec<JsonPath> {
        p.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn member_order_never_matters_and_values_do() {
        let a = br#"{"id": 1, "tags": ["a", "b"], "owner": {"name": "x", "age": 3}}"#;
        let b = br#"{"owner": {"age": 3, "name": "x"}, "tags": ["a", "b"], "id": 1}"#;
        assert_eq!(compare(a, b, &[]), Some(None));
        let c = br#"{"owner": {"age": 4, "name": "x"}, "tags": ["a", "b"], "id": 1}"#;
        assert_eq!(compare(a, c, &[]), Some(Some("owner.age".to_owned())));
        let d = br#"{"owner": {"age": 3, "name": "x"}, "tags": ["b", "a"], "id": 1}"#;
        assert_eq!(compare(a, d, &[]), Some(Some("tags[0]".to_owned())));
        assert_eq!(compare(a, b"not json", &[]), None);
    }

    #[test]
    fn ignored_paths_are_left_out_on_both_sides() {
        let a =
            br#"{"meta": {"ts": 1, "v": 2}, "items": [{"id": 1, "n": "a"}, {"id": 2, "n": "b"}]}"#;
        let b =
            br#"{"meta": {"ts": 9, "v": 2}, "items": [{"id": 7, "n": "a"}, {"id": 8, "n": "b"}]}"#;
        assert_eq!(compare(a, b, &[]), Some(Some("items[0].id".to_owned())));
        assert_eq!(
            compare(a, b, &paths(&["meta.ts", "items[*].id"])),
            Some(None)
        );
        assert_eq!(
            compare(a, b, &paths(&["meta.ts", "items[0].id"])),
            Some(Some("items[1].id".to_owned()))
        );
    }

    #[test]
    fn bad_paths_are_errors() {
        for bad in ["", ".", "a..b", "a[", "a[x]", "a[0]b"] {
            assert!(bad.parse::<JsonPath>().is_err(), "{bad}");
        }
        assert!("a[0][1].b".parse::<JsonPath>().is_ok());
    }
}
