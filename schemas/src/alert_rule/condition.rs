//! A rule's condition as it is evaluated: the wire `AlertCondition` checked (finite
//! bounds in order, hysteresis on the recovering side) and its defaults filled in.

use crate::AlertCondition;

/// A condition with its defaults applied. Every bound is finite; times are microseconds.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    Above {
        threshold: f64,
        recovery: f64,
    },
    Below {
        threshold: f64,
        recovery: f64,
    },
    Outside {
        low: f64,
        high: f64,
        recovery_low: f64,
        recovery_high: f64,
    },
    Inside {
        low: f64,
        high: f64,
        recovery_low: f64,
        recovery_high: f64,
    },
    /// On the absolute change per second between consecutive samples.
    RateOfChange {
        threshold: f64,
        recovery: f64,
    },
    Absent {
        after_micros: i64,
    },
}

impl Condition {
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::Above { .. } => "above",
            Condition::Below { .. } => "below",
            Condition::Outside { .. } => "outside",
            Condition::Inside { .. } => "inside",
            Condition::RateOfChange { .. } => "rate_of_change",
            Condition::Absent { .. } => "absent",
        }
    }

    /// Whether `v` makes the rule (start to) fire; with the bound that was crossed.
    pub fn violated_by(&self, v: f64) -> Option<f64> {
        match *self {
            Condition::Above { threshold, .. } | Condition::RateOfChange { threshold, .. } => {
                (v > threshold).then_some(threshold)
            }
            Condition::Below { threshold, .. } => (v < threshold).then_some(threshold),
            Condition::Outside { low, high, .. } => {
                if v < low {
                    Some(low)
                } else if v > high {
                    Some(high)
                } else {
                    None
                }
            }
            Condition::Inside { low, high, .. } => {
                (low..=high).contains(&v).then(|| nearest(v, low, high))
            }
            Condition::Absent { .. } => None,
        }
    }

    /// Whether `v` resolves a firing rule; with the recovery bound it is at or beyond.
    pub fn recovered_by(&self, v: f64) -> Option<f64> {
        match *self {
            Condition::Above { recovery, .. } | Condition::RateOfChange { recovery, .. } => {
                (v <= recovery).then_some(recovery)
            }
            Condition::Below { recovery, .. } => (v >= recovery).then_some(recovery),
            Condition::Outside {
                recovery_low,
                recovery_high,
                ..
            } => (recovery_low..=recovery_high)
                .contains(&v)
                .then(|| nearest(v, recovery_low, recovery_high)),
            Condition::Inside {
                recovery_low,
                recovery_high,
                ..
            } => {
                if v < recovery_low {
                    Some(recovery_low)
                } else if v > recovery_high {
                    Some(recovery_high)
                } else {
                    None
                }
            }
            Condition::Absent { .. } => None,
        }
    }
}

fn nearest(v: f64, low: f64, high: f64) -> f64 {
    if (v - low).abs() <= (high - v).abs() {
        low
    } else {
        high
    }
}

fn finite(name: &str, v: f64) -> Result<f64, String> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("{name} must be a finite number, not {v}"))
    }
}

pub(crate) fn compile_condition(c: &AlertCondition) -> Result<Condition, String> {
    Ok(match *c {
        AlertCondition::Above {
            threshold,
            recovery,
        } => {
            let threshold = finite("threshold", threshold)?;
            let recovery = finite("recovery", recovery.unwrap_or(threshold))?;
            if recovery > threshold {
                return Err(format!(
                    "recovery {recovery} is above the threshold {threshold}: an above rule recovers at or below its threshold"
                ));
            }
            Condition::Above {
                threshold,
                recovery,
            }
        }
        AlertCondition::Below {
            threshold,
            recovery,
        } => {
            let threshold = finite("threshold", threshold)?;
            let recovery = finite("recovery", recovery.unwrap_or(threshold))?;
            if recovery < threshold {
                return Err(format!(
                    "recovery {recovery} is below the threshold {threshold}: a below rule recovers at or above its threshold"
                ));
            }
            Condition::Below {
                threshold,
                recovery,
            }
        }
        AlertCondition::RateOfChange {
            threshold,
            recovery,
        } => {
            let threshold = finite("threshold", threshold)?;
            if threshold <= 0.0 {
                return Err(format!(
                    "threshold {threshold} of a rate_of_change rule must be above 0 (change per second, either direction)"
                ));
            }
            let recovery = finite("recovery", recovery.unwrap_or(threshold))?;
            if !(0.0..=threshold).contains(&recovery) {
                return Err(format!(
                    "recovery {recovery} must be between 0 and the threshold {threshold}"
                ));
            }
            Condition::RateOfChange {
                threshold,
                recovery,
            }
        }
        AlertCondition::Outside {
            low,
            high,
            recovery_low,
            recovery_high,
        } => {
            let (low, high) = range(low, high)?;
            let recovery_low = finite("recovery_low", recovery_low.unwrap_or(low))?;
            let recovery_high = finite("recovery_high", recovery_high.unwrap_or(high))?;
            if !(low <= recovery_low && recovery_low <= recovery_high && recovery_high <= high) {
                return Err(format!(
                    "the recovery range [{recovery_low}, {recovery_high}] must lie within [{low}, {high}]: an outside rule recovers back inside its range"
                ));
            }
            Condition::Outside {
                low,
                high,
                recovery_low,
                recovery_high,
            }
        }
        AlertCondition::Inside {
            low,
            high,
            recovery_low,
            recovery_high,
        } => {
            let (low, high) = range(low, high)?;
            let recovery_low = finite("recovery_low", recovery_low.unwrap_or(low))?;
            let recovery_high = finite("recovery_high", recovery_high.unwrap_or(high))?;
            if !(recovery_low <= low && high <= recovery_high) {
                return Err(format!(
                    "the recovery range [{recovery_low}, {recovery_high}] must contain [{low}, {high}]: an inside rule recovers once the value leaves the wider range"
                ));
            }
            Condition::Inside {
                low,
                high,
                recovery_low,
                recovery_high,
            }
        }
        AlertCondition::Absent { after } => {
            let after_micros = i64::try_from(after.as_micros()).unwrap_or(i64::MAX);
            if after_micros <= 0 {
                return Err("an absent rule needs an `after` period above 0".into());
            }
            Condition::Absent { after_micros }
        }
    })
}

fn range(low: f64, high: f64) -> Result<(f64, f64), String> {
    let low = finite("low", low)?;
    let high = finite("high", high)?;
    if low > high {
        return Err(format!("low {low} is above high {high}"));
    }
    Ok((low, high))
}
