//! Kubernetes label selector matching (matchLabels and matchExpressions).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// Checks a selector's structure as the API server would for a built-in
/// kind's selector field.
pub fn validate(selector: &LabelSelector) -> Result<(), String> {
    for (i, e) in selector.match_expressions.iter().flatten().enumerate() {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!(
                    "selector.matchExpressions[{i}]: operator {} needs values",
                    e.operator
                ));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!(
                    "selector.matchExpressions[{i}]: operator {} takes no values",
                    e.operator
                ));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(format!(
                    "selector.matchExpressions[{i}]: unknown operator {other:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Whether `labels` satisfy `selector`; no selector, or an empty one, selects all.
pub fn matches(
    selector: Option<&LabelSelector>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let get = |k: &str| labels.and_then(|l| l.get(k));
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| get(k) == Some(v));
    labels_ok
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn match_labels_and_expressions() {
        let l = labels(&[("site", "eu"), ("team", "ops")]);
        assert!(matches(None, Some(&l)));
        assert!(matches(Some(&LabelSelector::default()), None));
        let s = LabelSelector {
            match_labels: Some(labels(&[("site", "eu")])),
            match_expressions: Some(vec![
                expr("team", "In", &["ops", "dev"]),
                expr("tier", "NotIn", &["gold"]),
                expr("team", "Exists", &[]),
                expr("retired", "DoesNotExist", &[]),
            ]),
        };
        assert!(matches(Some(&s), Some(&l)));
        assert!(!matches(
            Some(&s),
            Some(&labels(&[("site", "us"), ("team", "ops")]))
        ));
        assert!(!matches(
            Some(&s),
            Some(&labels(&[("site", "eu"), ("team", "hr")]))
        ));
        assert!(!matches(
            Some(&s),
            Some(&labels(&[("site", "eu"), ("team", "ops"), ("retired", "")]))
        ));
        assert!(!matches(Some(&s), None));
    }

    #[test]
    fn validation() {
        let bad = |e| LabelSelector {
            match_expressions: Some(vec![e]),
            ..Default::default()
        };
        assert!(validate(&bad(expr("a", "In", &[]))).is_err());
        assert!(validate(&bad(expr("a", "Exists", &["x"]))).is_err());
        assert!(validate(&bad(expr("a", "Gt", &["1"]))).is_err());
        assert!(validate(&bad(expr("a", "NotIn", &["x"]))).is_ok());
    }
}
