//! `deserialize_with` helpers that never fail on a value of the wrong JSON type: it reads as absent
//! (`None`, `false`, empty) and is skipped in the same pass, so one odd field in a message object
//! costs that field, not the whole delivery (a 4xx makes Meta retry it for seven days). Only
//! malformed JSON still fails.
//!
//! Objects go through the type's own derived `Deserialize` ([`object`]), so nested payload structs
//! stay plain derives whose leaf fields use the helpers below.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// `visit_*` methods for the shapes a lenient visitor does not want, each returning `$value`:
/// `others_become!(None; bool, str, unit, seq)`. Arrays and objects are drained first.
macro_rules! others_become {
    ($value:expr; $($kind:ident),*) => {
        $(others_become!(@ $kind $value);)*
    };
    (@bool $value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
    (@i64 $value:expr) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
    (@u64 $value:expr) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
    (@f64 $value:expr) => {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
    (@str $value:expr) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
    (@unit $value:expr) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
    (@seq $value:expr) => {
        fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($value)
        }
    };
    (@map $value:expr) => {
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($value)
        }
    };
}

/// A JSON object read as `T` (its derived `Deserialize`); any other value reads as `None`.
pub fn object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_any(ObjectVisitor(PhantomData))
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Some)
    }

    others_become!(None; bool, i64, u64, f64, str, unit, seq);
}

/// A JSON array of objects read as `T`s; an element that is not an object reads as
/// `T::default()` (so the count is kept), any other value as `None`.
pub fn list<'de, D, T>(deserializer: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    deserializer.deserialize_any(ListVisitor(PhantomData))
}

/// [`list`], with `None` read as an empty list.
pub fn vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    list(deserializer).map(Option::unwrap_or_default)
}

struct ListVisitor<T>(PhantomData<T>);

/// One list element: an object, else the default.
struct Item<T>(T);

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for Item<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        object(deserializer).map(|o| Item(o.unwrap_or_default()))
    }
}

impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for ListVisitor<T> {
    type Value = Option<Vec<T>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Item(item)) = seq.next_element::<Item<T>>()? {
            items.push(item);
        }
        Ok(Some(items))
    }

    others_become!(None; bool, i64, u64, f64, str, unit, map);
}

/// A string, borrowed from the body when Meta escaped nothing in it; a number reads as its
/// decimal text (ids are sometimes numbers in test tools); anything else as `None`.
pub fn cow<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    deserializer.deserialize_any(CowVisitor(PhantomData))
}

/// [`cow`], with `None` read as the empty string.
pub fn cow_or_empty<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Cow<'a, str>, D::Error> {
    cow(deserializer).map(Option::unwrap_or_default)
}

/// [`cow`], owned.
pub fn string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    cow(deserializer).map(|s| s.map(Cow::into_owned))
}

/// [`string`], with `None` read as the empty string.
pub fn string_or_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    string(deserializer).map(Option::unwrap_or_default)
}

struct CowVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for CowVisitor<'a> {
    type Value = Option<Cow<'a, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }

    others_become!(None; bool, unit, seq, map);
}

/// A finite number, or a string holding one; anything else reads as `None`.
pub fn number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    deserializer.deserialize_any(NumberVisitor)
}

struct NumberVisitor;

impl<'de> Visitor<'de> for NumberVisitor {
    type Value = Option<f64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v).filter(|v| v.is_finite()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.trim().parse::<f64>().ok().filter(|v| v.is_finite()))
    }

    others_become!(None; bool, unit, seq, map);
}

/// A whole number (or a string holding one, or a float with no fractional part); anything else
/// reads as `None`.
pub fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    deserializer.deserialize_any(IntegerVisitor)
}

struct IntegerVisitor;

impl<'de> Visitor<'de> for IntegerVisitor {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).ok())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // The range check keeps the cast exact; `as` would saturate.
        let whole = v.fract() == 0.0 && v >= i64::MIN as f64 && v < i64::MAX as f64;
        Ok(whole.then_some(v as i64))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.trim().parse().ok())
    }

    others_become!(None; bool, unit, seq, map);
}

/// `true`, `false` or the strings `"true"`/`"false"`; anything else reads as `None`.
pub fn opt_flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    deserializer.deserialize_any(FlagVisitor)
}

/// [`opt_flag`], with `None` read as `false`.
pub fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    opt_flag(deserializer).map(|b| b.unwrap_or(false))
}

struct FlagVisitor;

impl<'de> Visitor<'de> for FlagVisitor {
    type Value = Option<bool>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(match v {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
    }

    others_become!(None; i64, u64, f64, unit, seq, map);
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Inner {
        #[serde(deserialize_with = "string")]
        s: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Probe<'a> {
        #[serde(borrow, deserialize_with = "cow")]
        cow: Option<Cow<'a, str>>,
        #[serde(deserialize_with = "number")]
        number: Option<f64>,
        #[serde(deserialize_with = "integer")]
        integer: Option<i64>,
        #[serde(deserialize_with = "flag")]
        flag: bool,
        #[serde(deserialize_with = "opt_flag")]
        opt_flag: Option<bool>,
        #[serde(deserialize_with = "object")]
        object: Option<Inner>,
        #[serde(deserialize_with = "list")]
        list: Option<Vec<Inner>>,
        #[serde(deserialize_with = "vec")]
        vec: Vec<Inner>,
    }

    fn probe(json: &str) -> Probe<'_> {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn well_typed_values_are_read() {
        let p = probe(
            r#"{"cow":"abc","number":1.5,"integer":7,"flag":true,"opt_flag":false,
                "object":{"s":"x"},"list":[{"s":"y"}],"vec":[{"s":"z"}]}"#,
        );
        assert!(matches!(p.cow, Some(Cow::Borrowed("abc"))), "borrowed");
        assert_eq!(
            (p.number, p.integer, p.flag, p.opt_flag),
            (Some(1.5), Some(7), true, Some(false))
        );
        let inner = |s: &str| Inner { s: Some(s.into()) };
        assert_eq!(p.object, Some(inner("x")));
        assert_eq!(p.list, Some(vec![inner("y")]));
        assert_eq!(p.vec, vec![inner("z")]);
    }

    #[test]
    fn escaped_strings_are_owned() {
        assert!(matches!(probe(r#"{"cow":"a\/b"}"#).cow, Some(Cow::Owned(s)) if s == "a/b"));
    }

    #[test]
    fn numbers_in_strings_and_strings_of_numbers_are_converted() {
        let p = probe(r#"{"cow":12,"number":"2.25","integer":"42","opt_flag":"true"}"#);
        assert_eq!(p.cow.as_deref(), Some("12"));
        assert_eq!(
            (p.number, p.integer, p.opt_flag),
            (Some(2.25), Some(42), Some(true))
        );
        assert_eq!(probe(r#"{"integer":3.0}"#).integer, Some(3));
        assert_eq!(probe(r#"{"integer":3.5}"#).integer, None);
        assert_eq!(probe(r#"{"integer":18446744073709551615}"#).integer, None);
        assert_eq!(probe(r#"{"integer":1e300}"#).integer, None);
    }

    #[test]
    fn every_wrong_type_reads_as_absent_and_the_next_field_is_still_read() {
        let cases: [(&str, &[&str]); 5] = [
            (
                "number",
                &["null", "true", r#""s""#, "[1,[2]]", r#"{"a":{"b":[]}}"#],
            ),
            (
                "integer",
                &["null", "false", r#""1.5""#, "1.5", "[1]", "{}"],
            ),
            (
                "flag",
                &["null", "1", r#""yes""#, "[true]", r#"{"flag":true}"#],
            ),
            ("object", &["null", "1", r#""s""#, r#"[{"s":"x"}]"#]),
            ("list", &["null", "1", r#""s""#, r#"{"a":[{"s":"x"}]}"#]),
        ];
        for (field, wrongs) in cases {
            for wrong in wrongs {
                let json = format!(r#"{{"{field}":{wrong},"cow":"next"}}"#);
                let p = probe(&json);
                assert_eq!(p.cow.as_deref(), Some("next"), "{json}");
                let absent = match field {
                    "number" => p.number.is_none(),
                    "integer" => p.integer.is_none(),
                    "flag" => !p.flag && p.opt_flag.is_none(),
                    "object" => p.object.is_none(),
                    _ => p.list.is_none() && p.vec.is_empty(),
                };
                assert!(absent, "{json} read as {p:?}");
            }
        }
        let p = probe(r#"{"cow":[1],"opt_flag":"yes","vec":{"s":"x"}}"#);
        assert_eq!((p.cow, p.opt_flag, p.vec), (None, None, vec![]));
    }

    #[test]
    fn list_elements_that_are_not_objects_keep_their_place() {
        let p = probe(r#"{"vec":[1,{"s":"x"},null,"s"]}"#);
        let s: Vec<Option<&str>> = p.vec.iter().map(|i| i.s.as_deref()).collect();
        assert_eq!(s, [None, Some("x"), None, None]);
    }

    #[test]
    fn malformed_json_still_fails() {
        assert!(serde_json::from_str::<Probe<'_>>(r#"{"object":{"s":}"#).is_err());
    }
}
