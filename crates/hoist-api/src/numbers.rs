//! Whole numbers as JSON Schema reads them: `1.0` is the integer 1, so a
//! body a generated client or fuzzer writes that way is what the contract
//! promises to accept.

use serde::{Deserialize, Deserializer, de::Error};

/// A JSON number that is a whole number from 0 to `u64::MAX`, written with
/// or without a fraction of zero.
pub fn whole<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Whole(u64),
        Float(f64),
    }
    match Number::deserialize(deserializer)? {
        Number::Whole(value) => Ok(value),
        // 2^64 is the first float past u64::MAX; below it the cast is exact
        // for every whole float.
        Number::Float(value)
            if value.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&value) =>
        {
            Ok(value as u64)
        }
        Number::Float(value) => Err(D::Error::custom(format!(
            "invalid value: {value}, expected a whole number from 0"
        ))),
    }
}

/// [`whole`], or null.
pub fn optional_whole<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Whole(#[serde(deserialize_with = "whole")] u64);
    Ok(Option::<Whole>::deserialize(deserializer)?.map(|Whole(value)| value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Body {
        #[serde(deserialize_with = "whole")]
        n: u64,
        #[serde(default, deserialize_with = "optional_whole")]
        m: Option<u64>,
    }

    fn read(json: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn whole_numbers_are_read_with_or_without_a_zero_fraction() {
        assert_eq!(read(r#"{"n": 60}"#).unwrap(), Body { n: 60, m: None });
        assert_eq!(
            read(r#"{"n": 60.0, "m": 1.0}"#).unwrap(),
            Body { n: 60, m: Some(1) }
        );
        assert_eq!(read(r#"{"n": 1e3, "m": null}"#).unwrap().n, 1000);
        for refused in [
            r#"{"n": 1.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": -1.0}"#,
            r#"{"n": "1"}"#,
            r#"{"n": 1e30}"#,
        ] {
            assert!(read(refused).is_err(), "{refused}");
        }
    }
}
