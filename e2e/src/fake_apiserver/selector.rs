//! `labelSelector` and `fieldSelector` query parameters.
//!
//! Label selectors: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`,
//! comma-separated (all must hold). Field selectors: `path=v`, `path==v`, `path!=v`
//! where `path` is any dotted JSON path (`metadata.name`, `metadata.namespace`,
//! `involvedObject.name`, `status.phase`, …) — more permissive than the real server,
//! which accepts only a fixed list of fields per kind.

use serde_json::Value;

use super::error::{ApiError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

/// A parsed field selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<Requirement>);

/// Splits on commas outside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0_i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_set(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

fn parse_requirement(part: &str, set_based: bool) -> Result<Requirement> {
    let bad = || ApiError::bad_request(format!("unable to parse requirement: {part:?}"));
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = part.split_once("==") {
        return Ok(Requirement::Equals(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = part.split_once('=') {
        return Ok(Requirement::Equals(k.trim().into(), v.trim().into()));
    }
    if !set_based {
        return Err(bad());
    }
    if let Some((k, rest)) = part.split_once(" notin ") {
        return Ok(Requirement::NotIn(
            k.trim().into(),
            parse_set(rest).ok_or_else(bad)?,
        ));
    }
    if let Some((k, rest)) = part.split_once(" in ") {
        return Ok(Requirement::In(
            k.trim().into(),
            parse_set(rest).ok_or_else(bad)?,
        ));
    }
    if let Some(k) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(k.trim().into()));
    }
    if part.contains(char::is_whitespace) || part.contains('(') {
        return Err(bad());
    }
    Ok(Requirement::Exists(part.into()))
}

fn matches(req: &Requirement, lookup: impl Fn(&str) -> Option<String>) -> bool {
    match req {
        Requirement::Equals(k, v) => lookup(k).as_deref() == Some(v.as_str()),
        // As in Kubernetes, `k!=v` also matches objects without `k`.
        Requirement::NotEquals(k, v) => lookup(k).as_deref() != Some(v.as_str()),
        Requirement::In(k, set) => lookup(k).is_some_and(|x| set.contains(&x)),
        Requirement::NotIn(k, set) => lookup(k).is_none_or(|x| !set.contains(&x)),
        Requirement::Exists(k) => lookup(k).is_some(),
        Requirement::NotExists(k) => lookup(k).is_none(),
    }
}

impl LabelSelector {
    /// Parses a `labelSelector` query value.
    pub fn parse(s: &str) -> Result<Self> {
        split_top_level(s)
            .into_iter()
            .map(|p| parse_requirement(p, true))
            .collect::<Result<Vec<_>>>()
            .map(Self)
    }

    /// Whether `obj`'s `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.0.iter().all(|r| {
            matches(r, |k| {
                labels.get(k).and_then(Value::as_str).map(str::to_owned)
            })
        })
    }
}

impl FieldSelector {
    /// Parses a `fieldSelector` query value.
    pub fn parse(s: &str) -> Result<Self> {
        split_top_level(s)
            .into_iter()
            .map(|p| parse_requirement(p, false))
            .collect::<Result<Vec<_>>>()
            .map(Self)
    }

    /// Whether the fields of `obj` named by dotted paths satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|r| {
            matches(r, |path| {
                let v = path.split('.').try_fold(obj, |v, seg| v.get(seg))?;
                match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Null => None,
                    other => Some(other.to_string()),
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj() -> Value {
        json!({"metadata": {"name": "a", "namespace": "shop", "labels": {"app": "web", "tier": "front"}}})
    }

    #[test]
    fn equality_and_set_based_label_requirements_combine() {
        let o = obj();
        assert!(
            LabelSelector::parse("app=web,tier in (front, back)")
                .unwrap()
                .matches(&o)
        );
        assert!(
            LabelSelector::parse("app==web,!missing,tier")
                .unwrap()
                .matches(&o)
        );
        assert!(!LabelSelector::parse("app!=web").unwrap().matches(&o));
        assert!(
            !LabelSelector::parse("tier notin (front)")
                .unwrap()
                .matches(&o)
        );
        assert!(LabelSelector::parse("other notin (x)").unwrap().matches(&o));
        assert!(LabelSelector::parse("").unwrap().matches(&o));
    }

    #[test]
    fn field_selector_reads_dotted_paths() {
        let o = obj();
        assert!(
            FieldSelector::parse("metadata.name=a,metadata.namespace!=x")
                .unwrap()
                .matches(&o)
        );
        assert!(!FieldSelector::parse("metadata.name=b").unwrap().matches(&o));
        assert!(FieldSelector::parse("metadata.name").is_err());
    }
}
