//! Converting between Rust values and pin values.

use crate::Value;

/// A JSON document, as text (the `json` data type).
#[derive(Debug, Clone, PartialEq)]
pub struct Json(pub String);

macro_rules! into_value {
    ($($ty:ty => $variant:ident $(as $cast:ty)?),* $(,)?) => {
        $(impl From<$ty> for Value {
            fn from(value: $ty) -> Self {
                Value::$variant((value $(as $cast)?).into())
            }
        })*
    };
}

into_value! {
    bool => Boolean,
    i64 => Integer,
    i32 => Integer as i64,
    u32 => Integer as i64,
    f64 => Float,
    String => Text,
    &str => Text,
    Vec<u8> => Bytes,
    &[u8] => Bytes,
}

impl From<Json> for Value {
    fn from(json: Json) -> Self {
        Value::Json(json.0)
    }
}

impl From<()> for Value {
    fn from((): ()) -> Self {
        Value::Null
    }
}

/// Reading a typed value out of a pin value.
pub trait FromValue: Sized {
    /// What the type expects, for error messages.
    const EXPECTED: &'static str;
    fn from_value(value: &Value) -> Option<Self>;
}

macro_rules! from_value {
    ($($ty:ty, $expected:literal, |$v:ident| $body:expr;)*) => {
        $(impl FromValue for $ty {
            const EXPECTED: &'static str = $expected;
            fn from_value(value: &Value) -> Option<Self> {
                let $v = value;
                $body
            }
        })*
    };
}

from_value! {
    bool, "a boolean", |v| match v { Value::Boolean(b) => Some(*b), _ => None };
    i64, "an integer", |v| match v { Value::Integer(i) => Some(*i), _ => None };
    f64, "a number", |v| match v { Value::Float(f) => Some(*f), Value::Integer(i) => Some(*i as f64), _ => None };
    String, "text", |v| match v { Value::Text(t) => Some(t.clone()), _ => None };
    Vec<u8>, "bytes", |v| match v { Value::Bytes(b) => Some(b.clone()), _ => None };
    Json, "JSON", |v| match v { Value::Json(j) => Some(Json(j.clone())), _ => None };
    Value, "a value", |v| Some(v.clone());
}

impl<T: FromValue> FromValue for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}
