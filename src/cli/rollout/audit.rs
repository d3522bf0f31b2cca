//! The audit: every call's outcome checked against how many times its token ran, from the
//! nodes' own audit files.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use gracerpc::client::CallError;

use crate::cli::record::CallRecord;

/// Executions per token, read from audit files (8-byte big-endian tokens, appended).
pub fn read_executions(files: &[impl AsRef<Path>]) -> io::Result<HashMap<u64, u32>> {
    let mut runs: HashMap<u64, u32> = HashMap::new();
    for f in files {
        let bytes = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for chunk in bytes.chunks_exact(8) {
            let mut t = [0u8; 8];
            t.copy_from_slice(chunk);
            *runs.entry(u64::from_be_bytes(t)).or_default() += 1;
        }
    }
    Ok(runs)
}

/// What the audit found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// Tokens executed more than once.
    pub duplicates: u64,
    /// Calls that never ended, plus calls reported ok whose token never ran.
    pub lost: u64,
    /// Calls reported as failed-without-running (or rejected) whose token ran.
    pub mismatched: u64,
    /// Outcome-unknown calls whose token ran once.
    pub unknown_ran: u64,
    /// Outcome-unknown calls whose token never ran.
    pub unknown_not_ran: u64,
    /// Tokens executed that no call sent.
    pub phantom: u64,
}

impl Audit {
    /// Whether the audit found a broken promise (graceful mode must have none).
    pub fn clean(&self) -> bool {
        self.duplicates == 0 && self.lost == 0 && self.mismatched == 0 && self.phantom == 0
    }
}

/// Cross-checks every call against the executions of its token. `never_ended` counts calls
/// that were still running when the load stopped waiting.
pub fn audit(calls: &[CallRecord], runs: &HashMap<u64, u32>, never_ended: u64) -> Audit {
    let mut a = Audit {
        lost: never_ended,
        ..Default::default()
    };
    a.duplicates = runs.values().filter(|&&n| n > 1).count() as u64;
    let mut known = std::collections::HashSet::with_capacity(calls.len());
    for c in calls {
        known.insert(c.token);
        let ran = runs.get(&c.token).copied().unwrap_or(0);
        match &c.result {
            // It ran (a handler's status also means it ran): exactly once.
            Ok(_) | Err(CallError::Status { .. }) => {
                if ran == 0 {
                    a.lost += 1;
                }
            }
            Err(e) if e.may_have_run() => {
                if ran == 0 {
                    a.unknown_not_ran += 1;
                } else {
                    a.unknown_ran += 1;
                }
            }
            // Provably never ran: it must not have.
            Err(_) => {
                if ran > 0 {
                    a.mismatched += 1;
                }
            }
        }
    }
    a.phantom = runs.keys().filter(|t| !known.contains(t)).count() as u64;
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(token: u64, result: Result<u32, CallError>) -> CallRecord {
        CallRecord {
            token,
            start_us: 0,
            latency_us: 1,
            result,
        }
    }

    fn runs(pairs: &[(u64, u32)]) -> HashMap<u64, u32> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_clean_run_passes() {
        let calls = [
            call(1, Ok(0)),
            call(2, Ok(1)),
            call(3, Err(CallError::NoNodeAvailable { nodes: vec![] })),
        ];
        let a = audit(&calls, &runs(&[(1, 1), (2, 1)]), 0);
        assert!(a.clean(), "{a:?}");
    }

    #[test]
    fn a_duplicated_token_is_caught() {
        let a = audit(&[call(1, Ok(0))], &runs(&[(1, 2)]), 0);
        assert_eq!(a.duplicates, 1);
        assert!(!a.clean());
    }

    #[test]
    fn an_ok_call_whose_token_never_ran_is_lost() {
        let a = audit(&[call(1, Ok(0)), call(2, Ok(0))], &runs(&[(1, 1)]), 0);
        assert_eq!(a.lost, 1);
        assert!(!a.clean());
    }

    #[test]
    fn a_failed_call_whose_token_ran_is_mismatched() {
        let calls = [
            call(1, Err(CallError::Rejected)),
            call(2, Err(CallError::NoNodeAvailable { nodes: vec![] })),
        ];
        let a = audit(&calls, &runs(&[(1, 1)]), 0);
        assert_eq!(a.mismatched, 1);
        assert!(!a.clean());
    }

    #[test]
    fn unknown_outcomes_may_have_run_either_way() {
        let calls = [
            call(1, Err(CallError::OutcomeUnknown)),
            call(2, Err(CallError::OutcomeUnknown)),
        ];
        let a = audit(&calls, &runs(&[(1, 1)]), 0);
        assert_eq!((a.unknown_ran, a.unknown_not_ran), (1, 1));
        assert!(a.clean());
    }

    #[test]
    fn calls_that_never_ended_and_phantom_tokens_count() {
        let a = audit(&[call(1, Ok(0))], &runs(&[(1, 1), (99, 1)]), 2);
        assert_eq!(a.lost, 2);
        assert_eq!(a.phantom, 1);
        assert!(!a.clean());
    }

    #[test]
    fn audit_files_are_read_as_big_endian_tokens() {
        let dir = std::env::temp_dir().join(format!("gracerpc-audit-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("a");
        let mut bytes = Vec::new();
        for t in [5u64, 7, 5] {
            bytes.extend_from_slice(&t.to_be_bytes());
        }
        std::fs::write(&f, bytes).unwrap();
        let r = read_executions(&[&f, &dir.join("missing")]).unwrap();
        assert_eq!(r, runs(&[(5, 2), (7, 1)]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
