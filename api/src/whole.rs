//! Whole numbers as JSON writes them. To JSON Schema (and so to the OpenAPI document) `7`
//! and `7.0` are the same integer, so both are read as 7 here; `7.5`, or a number beyond a
//! 64-bit integer, is refused like any other malformed field.

use serde::de::Error;
use serde::{Deserialize, Deserializer};
use serde_json::Number;

/// `#[serde(deserialize_with = "crate::whole::required")]`
pub fn required<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    whole(Number::deserialize(deserializer)?)
}

/// `#[serde(default, deserialize_with = "crate::whole::optional")]`
pub fn optional<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    Option::<Number>::deserialize(deserializer)?
        .map(whole)
        .transpose()
}

fn whole<E: Error>(number: Number) -> Result<i64, E> {
    // i64::MAX as f64 rounds up to 2^63, itself out of range: hence the strict bound.
    let range = i64::MIN as f64..i64::MAX as f64;
    number
        .as_i64()
        .or_else(|| {
            number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && range.contains(f))
                .map(|f| f as i64)
        })
        .ok_or_else(|| E::custom(format!("{number} is not a whole number")))
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct Seq {
        #[serde(default, deserialize_with = "super::optional")]
        seq: Option<i64>,
    }

    fn seq(json: &str) -> Option<Option<i64>> {
        serde_json::from_str::<Seq>(json).ok().map(|s| s.seq)
    }

    #[test]
    fn integral_numbers_in_any_notation_are_whole() {
        assert_eq!(seq(r#"{"seq": 7}"#), Some(Some(7)));
        assert_eq!(seq(r#"{"seq": 7.0}"#), Some(Some(7)));
        assert_eq!(seq(r#"{"seq": -2e3}"#), Some(Some(-2000)));
        assert_eq!(seq(r#"{"seq": null}"#), Some(None));
        assert_eq!(seq("{}"), Some(None));
    }

    #[test]
    fn fractions_and_out_of_range_numbers_are_refused() {
        for json in [
            r#"{"seq": 7.5}"#,
            r#"{"seq": 9223372036854775808}"#,
            r#"{"seq": 1e300}"#,
            r#"{"seq": "7"}"#,
        ] {
            assert_eq!(seq(json), None, "{json}");
        }
    }
}
