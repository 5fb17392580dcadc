//! Percentiles and reports.

use serde_json::{Map, Value};

/// The `p`-th percentile (0–100) of `samples` by nearest rank; 0 for no samples.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A flat report: named fields in a fixed order, printed as a table or as one JSON object.
#[derive(Debug, Default, Clone)]
pub struct Report {
    fields: Vec<(String, Value)>,
}

impl Report {
    /// Adds a field; floats are rounded to 3 decimals so reports stay readable.
    pub fn field(mut self, name: &str, value: impl Into<Value>) -> Self {
        let value = match value.into() {
            Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().unwrap_or(0.0);
                Value::from((f * 1000.0).round() / 1000.0)
            }
            v => v,
        };
        self.fields.push((name.to_string(), value));
        self
    }

    /// The report as a JSON object (field order kept).
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        for (k, v) in &self.fields {
            map.insert(k.clone(), v.clone());
        }
        Value::Object(map)
    }

    /// The report as a two-column text table.
    pub fn to_table(&self) -> String {
        let width = self.fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in &self.fields {
            out.push_str(&format!("{k:<width$}  {v}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&s, 50.0), 50.0);
        assert_eq!(percentile(&s, 99.0), 99.0);
        assert_eq!(percentile(&s, 100.0), 100.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
    }

    #[test]
    fn report_keeps_order_and_rounds() {
        let r = Report::default().field("b", 1.23456).field("a", 2);
        assert_eq!(r.to_json().to_string(), r#"{"b":1.235,"a":2}"#);
        assert!(r.to_table().starts_with("b  1.235\n"));
    }
}
