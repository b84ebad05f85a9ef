//! Every new-namespace sample traced through the operator: from the default ServiceAccount
//! appearing to the operator's reconcile asked for (watch delivery), its wait in the queue, the
//! reconcile (plan and writes), and the patch reaching the benchmark's watch. The operator's side
//! comes from its debug log line of each namespace reconcile (`waited_ms`, `took_ms`, stamped at
//! its end).

use std::collections::HashMap;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

/// One namespace reconcile, from the operator's log.
struct Reconciled {
    ended: Timestamp,
    waited_ms: f64,
    took_ms: f64,
}

/// The namespace reconciles in a JSON log, by namespace.
fn reconciles(log: &str) -> HashMap<String, Vec<Reconciled>> {
    let mut by_namespace: HashMap<String, Vec<Reconciled>> = HashMap::new();
    for line in log.lines().filter(|l| l.contains("\"namespace reconciled\"")) {
        let Ok(event) = serde_json::from_str::<Value>(line) else { continue };
        let field = |name: &str| event.get(name).and_then(Value::as_f64);
        let ended = event.get("timestamp").and_then(Value::as_str).and_then(|t| t.parse::<Timestamp>().ok());
        let namespace = event.get("namespace").and_then(Value::as_str);
        if let (Some(ended), Some(namespace), Some(waited_ms), Some(took_ms)) =
            (ended, namespace, field("waited_ms"), field("took_ms"))
        {
            by_namespace.entry(namespace.to_owned()).or_default().push(Reconciled { ended, waited_ms, took_ms });
        }
    }
    by_namespace
}

/// Where one sample's time went, in ms.
#[derive(Serialize, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) total: f64,
    /// From the ServiceAccount seen by the benchmark to the operator's reconcile asked for.
    to_operator: f64,
    queued: f64,
    reconcile: f64,
    /// From the reconcile's end to the benchmark seeing the entry.
    back: f64,
}

/// The samples (namespace, ServiceAccount seen, entry seen; wall clock), each with the last
/// reconcile of its namespace that ended before the entry was seen: the one that patched it.
/// A sample without one in the log is left out.
pub(crate) fn explain(log: &str, samples: &[(String, Timestamp, Timestamp)]) -> Vec<Sample> {
    let reconciles = reconciles(log);
    let ms = |from: Timestamp, to: Timestamp| (to - from).total(jiff::Unit::Millisecond).unwrap_or(f64::NAN);
    samples
        .iter()
        .filter_map(|(namespace, account_seen, entry_seen)| {
            let patcher =
                reconciles.get(namespace)?.iter().filter(|r| r.ended <= *entry_seen).max_by_key(|r| r.ended)?;
            let reconcile = patcher.took_ms;
            let asked = ms(*account_seen, patcher.ended) - reconcile - patcher.waited_ms;
            Some(Sample {
                total: ms(*account_seen, *entry_seen),
                to_operator: asked,
                queued: patcher.waited_ms,
                reconcile,
                back: ms(patcher.ended, *entry_seen),
            })
        })
        .collect()
}

/// The slowest 1% (at least one sample), slowest first, each with where its time went.
pub(crate) fn slowest(samples: &[Sample]) -> Vec<Sample> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| b.total.total_cmp(&a.total));
    sorted.truncate(samples.len().div_ceil(100).max(1));
    sorted
}

/// A line of Markdown for a sample.
pub(crate) fn describe(sample: &Sample) -> String {
    format!(
        "{:.0} ms = {:.0} to the operator + {:.0} queued + {:.0} reconcile (plan and writes) + {:.0} back to the watch",
        sample.total, sample.to_operator, sample.queued, sample.reconcile, sample.back
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_split_at_the_reconcile_that_patched_its_account() {
        let log = [
            r#"{"timestamp":"2026-12-04T10:00:00.010Z","level":"DEBUG","message":"namespace reconciled","namespace":"n","waited_ms":1.0,"took_ms":4.0}"#,
            r#"{"timestamp":"2026-12-04T10:00:00.150Z","level":"DEBUG","message":"namespace reconciled","namespace":"n","waited_ms":20.0,"took_ms":10.0}"#,
            r#"{"timestamp":"2026-12-04T10:00:01.000Z","level":"DEBUG","message":"namespace reconciled","namespace":"n","waited_ms":1.0,"took_ms":1.0}"#,
            r#"{"timestamp":"2026-12-04T10:00:00.100Z","level":"INFO","message":"something else","namespace":"n"}"#,
        ]
        .join("\n");
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        let samples = [
            ("n".to_owned(), at("2026-12-04T10:00:00.100Z"), at("2026-12-04T10:00:00.160Z")),
            ("unknown".to_owned(), at("2026-12-04T10:00:00.100Z"), at("2026-12-04T10:00:00.160Z")),
        ];
        let explained = explain(&log, &samples);
        assert_eq!(explained.len(), 1, "a namespace the log does not name is left out");
        let s = explained[0];
        assert_eq!((s.total.round(), s.queued, s.reconcile, s.back.round()), (60.0, 20.0, 10.0, 10.0));
        assert_eq!(s.to_operator.round(), 20.0, "asked for 20 ms after the account was seen");
        assert_eq!(
            describe(&s),
            "60 ms = 20 to the operator + 20 queued + 10 reconcile (plan and writes) + 10 back to the watch"
        );
    }

    #[test]
    fn the_slowest_percent_is_at_least_one_sample() {
        let sample = |total| Sample { total, to_operator: 0.0, queued: 0.0, reconcile: 0.0, back: 0.0 };
        let samples: Vec<Sample> = (0..200).map(|i| sample(i as f64)).collect();
        assert_eq!(slowest(&samples).iter().map(|s| s.total).collect::<Vec<_>>(), [199.0, 198.0]);
        assert_eq!(slowest(&samples[..5]).len(), 1);
    }
}
