//! SQL functions that replace DataFusion's own where the lake's data makes a faster,
//! equally correct path possible.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    ArrowTimestampType, DataType, FieldRef, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::{Result, ScalarValue};
use datafusion::functions::datetime::date_trunc::DateTruncFunc;
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// The functions a query session registers over DataFusion's defaults.
pub(crate) fn overrides() -> Vec<ScalarUDF> {
    vec![ScalarUDF::new_from_impl(UtcDateTrunc::default())]
}

/// `date_trunc` that truncates UTC timestamps (every `ts` of the lake is
/// `Timestamp(Microsecond, "UTC")`) to the hour or the day with integer arithmetic.
///
/// DataFusion 55 takes that path only for timestamps without a time zone; with one, even
/// UTC, it converts every value through chrono-tz and formats an error message per value
/// that it then drops, which was over half of an hourly downsample of a week. In UTC an
/// hour and a day have uniform lengths (DataFusion's own reasoning for the zone-less
/// case), so the result is the same. Every other case (other zones, other
/// granularities, scalars) is DataFusion's `date_trunc` unchanged. Upstream pull request
/// apache/datafusion#25326 (open) does the same and more; drop this once it is released.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct UtcDateTrunc {
    inner: DateTruncFunc,
}

impl UtcDateTrunc {
    /// The array and the step (in the array's unit) when the fast path applies.
    fn fast_path(args: &[ColumnarValue]) -> Option<(&ArrayRef, i64)> {
        let [granularity, ColumnarValue::Array(array)] = args else {
            return None;
        };
        let granularity = match granularity {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(g))
                | ScalarValue::Utf8View(Some(g))
                | ScalarValue::LargeUtf8(Some(g)),
            ) => g,
            _ => return None,
        };
        let seconds = if granularity.eq_ignore_ascii_case("hour") {
            3_600
        } else if granularity.eq_ignore_ascii_case("day") {
            86_400
        } else {
            return None;
        };
        let DataType::Timestamp(unit, Some(tz)) = array.data_type() else {
            return None;
        };
        if !is_utc(tz) {
            return None;
        }
        let per_second = match unit {
            TimeUnit::Second => 1,
            TimeUnit::Millisecond => 1_000,
            TimeUnit::Microsecond => 1_000_000,
            TimeUnit::Nanosecond => 1_000_000_000,
        };
        Some((array, seconds * per_second))
    }
}

/// Time zone names that mean UTC itself (not merely an offset of zero in a zone with
/// daylight saving time).
fn is_utc(tz: &str) -> bool {
    ["UTC", "Z", "+00:00", "+0000", "Etc/UTC"]
        .iter()
        .any(|utc| tz.eq_ignore_ascii_case(utc))
}

fn truncate<T: ArrowTimestampType>(array: &dyn Array, step: i64) -> ArrayRef {
    let array = array.as_primitive::<T>();
    let truncated = array
        .unary::<_, T>(|v| v - v.rem_euclid(step))
        .with_data_type(array.data_type().clone());
    Arc::new(truncated)
}

impl ScalarUDFImpl for UtcDateTrunc {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some((array, step)) = Self::fast_path(&args.args) {
            let truncated = match array.data_type() {
                DataType::Timestamp(TimeUnit::Second, _) => {
                    truncate::<TimestampSecondType>(array, step)
                }
                DataType::Timestamp(TimeUnit::Millisecond, _) => {
                    truncate::<TimestampMillisecondType>(array, step)
                }
                DataType::Timestamp(TimeUnit::Microsecond, _) => {
                    truncate::<TimestampMicrosecondType>(array, step)
                }
                _ => truncate::<TimestampNanosecondType>(array, step),
            };
            return Ok(ColumnarValue::Array(truncated));
        }
        self.inner.invoke_with_args(args)
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn output_ordering(&self, input: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(input)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
        TimestampSecondArray,
    };
    use arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;

    fn invoke(
        udf: &dyn ScalarUDFImpl,
        granularity: &str,
        array: ArrayRef,
    ) -> Result<ColumnarValue> {
        let rows = array.len();
        let arg_fields = vec![
            Arc::new(Field::new("g", DataType::Utf8, false)),
            Arc::new(Field::new("ts", array.data_type().clone(), true)),
        ];
        let return_field = Arc::new(Field::new("date_trunc", array.data_type().clone(), true));
        udf.invoke_with_args(ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(granularity.to_owned()))),
                ColumnarValue::Array(array),
            ],
            arg_fields,
            number_rows: rows,
            return_field,
            config_options: Arc::new(ConfigOptions::default()),
        })
    }

    fn array_of(value: ColumnarValue) -> ArrayRef {
        match value {
            ColumnarValue::Array(array) => array,
            ColumnarValue::Scalar(s) => panic!("expected an array, got {s:?}"),
        }
    }

    /// Values around and far from the epoch, negative ones (before 1970) included,
    /// on and off hour and day boundaries, and nulls.
    fn seconds() -> Vec<Option<i64>> {
        let mut values = vec![None, Some(0), Some(-1), Some(1), Some(3_599), Some(3_600)];
        for base in [-86_400 * 400, -86_400, 0, 1_795_428_000, 4_102_444_800] {
            for offset in [-86_401, -3_601, -1, 0, 1, 59, 3_599, 3_600, 43_210, 86_399] {
                values.push(Some(base + offset));
            }
        }
        values.push(None);
        values
    }

    fn arrays(tz: &str) -> Vec<ArrayRef> {
        let scaled = |per_second: i64| -> Vec<Option<i64>> {
            seconds()
                .into_iter()
                .map(|v| v.map(|s| s * per_second + (per_second - 1) / 3))
                .collect()
        };
        vec![
            Arc::new(TimestampSecondArray::from(scaled(1)).with_timezone(tz)),
            Arc::new(TimestampMillisecondArray::from(scaled(1_000)).with_timezone(tz)),
            Arc::new(TimestampMicrosecondArray::from(scaled(1_000_000)).with_timezone(tz)),
            Arc::new(TimestampNanosecondArray::from(scaled(1_000_000_000)).with_timezone(tz)),
        ]
    }

    #[test]
    fn hour_and_day_in_utc_equal_datafusions_date_trunc() {
        let ours = UtcDateTrunc::default();
        let datafusion = DateTruncFunc::new();
        for tz in ["UTC", "+00:00"] {
            for array in arrays(tz) {
                assert!(
                    UtcDateTrunc::fast_path(&[
                        ColumnarValue::Scalar(ScalarValue::Utf8(Some("hour".into()))),
                        ColumnarValue::Array(array.clone()),
                    ])
                    .is_some()
                );
                for granularity in ["hour", "HOUR", "day", "Day"] {
                    let expected =
                        array_of(invoke(&datafusion, granularity, array.clone()).unwrap());
                    let got = array_of(invoke(&ours, granularity, array.clone()).unwrap());
                    assert_eq!(
                        got.as_ref(),
                        expected.as_ref(),
                        "{granularity} of {:?}",
                        array.data_type()
                    );
                }
            }
        }
    }

    #[test]
    fn other_zones_and_granularities_are_datafusions_own() {
        let ours = UtcDateTrunc::default();
        let datafusion = DateTruncFunc::new();
        for tz in ["Europe/Berlin", "+05:30", "America/Sao_Paulo"] {
            for array in arrays(tz) {
                let args = [
                    ColumnarValue::Scalar(ScalarValue::Utf8(Some("hour".into()))),
                    ColumnarValue::Array(array.clone()),
                ];
                assert!(UtcDateTrunc::fast_path(&args).is_none(), "{tz}");
                for granularity in ["hour", "day", "month", "week"] {
                    let expected =
                        array_of(invoke(&datafusion, granularity, array.clone()).unwrap());
                    let got = array_of(invoke(&ours, granularity, array.clone()).unwrap());
                    assert_eq!(got.as_ref(), expected.as_ref(), "{tz} {granularity}");
                }
            }
        }
        for array in arrays("UTC") {
            for granularity in ["minute", "week", "month", "quarter", "year"] {
                let args = [
                    ColumnarValue::Scalar(ScalarValue::Utf8(Some(granularity.into()))),
                    ColumnarValue::Array(array.clone()),
                ];
                assert!(UtcDateTrunc::fast_path(&args).is_none(), "{granularity}");
                let expected = array_of(invoke(&datafusion, granularity, array.clone()).unwrap());
                let got = array_of(invoke(&ours, granularity, array.clone()).unwrap());
                assert_eq!(got.as_ref(), expected.as_ref(), "UTC {granularity}");
            }
        }
        // A bad granularity is DataFusion's error.
        let bad = invoke(&ours, "fortnight", arrays("UTC").remove(0)).unwrap_err();
        assert!(bad.to_string().contains("fortnight"), "{bad}");
    }
}
