//! The subcommands of the `gracerpc` binary.

pub mod bench;
pub mod call;
pub mod load;
pub mod logger;
pub mod registry;
pub mod rollout;
pub mod serve;
pub mod summary;

/// Parses a duration flag given in seconds: a finite number from 0 to one day. Anything else
/// (`inf`, `nan`, negative, a typo) is a usage error, not a panic deep in `Duration`.
pub fn seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=86_400.0).contains(&v) {
        return Err(format!("`{s}` must be between 0 and 86400 seconds"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::seconds;

    #[test]
    fn seconds_accepts_finite_durations_and_refuses_the_rest() {
        assert_eq!(seconds("2.5"), Ok(2.5));
        assert_eq!(seconds("0"), Ok(0.0));
        for bad in ["inf", "-1", "nan", "1e9", "ten", ""] {
            assert!(seconds(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
