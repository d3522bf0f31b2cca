//! Summaries of a load's call records: counts by outcome, latency percentiles, and a tiny JSON
//! writer (the reports are flat objects; a serializer crate would be more than they need).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::load::CallRecord;

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    pub fn of<'a>(latencies: impl IntoIterator<Item = &'a CallRecord>) -> Latency {
        let Ok(mut h) = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3) else {
            return Latency::default();
        };
        for r in latencies {
            let _ = h.record(r.latency_us.clamp(1, 60_000_000));
        }
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Counts by outcome.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub failed_by_kind: BTreeMap<&'static str, u64>,
    pub outcome_unknown: u64,
    pub replayed: u64,
}

impl Counts {
    pub fn of(records: &[CallRecord]) -> Counts {
        let mut c = Counts {
            sent: records.len() as u64,
            ..Default::default()
        };
        for r in records {
            match &r.result {
                Ok(replays) => {
                    c.ok += 1;
                    c.replayed += u64::from(*replays);
                }
                Err(e) => {
                    c.failed += 1;
                    *c.failed_by_kind.entry(e.kind()).or_default() += 1;
                    if matches!(e, gracerpc::client::CallError::OutcomeUnknown) {
                        c.outcome_unknown += 1;
                    }
                }
            }
        }
        c
    }
}

/// A flat JSON object built field by field.
#[derive(Default)]
pub struct Json {
    out: String,
}

impl Json {
    pub fn new() -> Json {
        Json {
            out: String::from("{"),
        }
    }

    fn key(&mut self, k: &str) {
        if self.out.len() > 1 {
            self.out.push_str(", ");
        }
        let _ = write!(self.out, "\"{}\": ", escape(k));
    }

    pub fn num(&mut self, k: &str, v: impl std::fmt::Display) -> &mut Self {
        self.key(k);
        let _ = write!(self.out, "{v}");
        self
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        let _ = write!(self.out, "\"{}\"", escape(v));
        self
    }

    pub fn raw(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        self.out.push_str(v);
        self
    }

    pub fn finish(&mut self) -> String {
        let mut s = std::mem::take(&mut self.out);
        s.push('}');
        s
    }
}

/// A JSON object of counts by name.
pub fn json_map<'a>(m: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    let mut j = Json::new();
    for (k, v) in m {
        j.num(k, v);
    }
    j.finish()
}

/// A JSON array of numbers or pre-encoded values.
pub fn json_array(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().collect();
    format!("[{}]", items.join(", "))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}
