//! The JSON request body extractor. It is `web::Json` (same size limit and
//! error handling), except that only a JSON object becomes a request type:
//! serde also reads a struct from an array of its field values in order,
//! which the contract does not allow and no client means.

use std::future::Future;
use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::{DeserializeOwned, MapAccess, Visitor, value::MapAccessDeserializer};
use serde::{Deserialize, Deserializer};

/// A request body that must be a JSON object.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let inner = web::Json::<Object<T>>::from_request(req, payload);
        Box::pin(async move { Ok(Json(inner.await?.into_inner().0)) })
    }
}

/// `T`, read only from a JSON object.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OnlyMaps<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for OnlyMaps<T> {
            type Value = T;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        d.deserialize_map(OnlyMaps(PhantomData)).map(Object)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::Object;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pair {
        a: Option<u8>,
        #[serde(default)]
        b: Vec<u8>,
    }

    fn read(s: &str) -> Result<Pair, serde_json::Error> {
        serde_json::from_str::<Object<Pair>>(s).map(|o| o.0)
    }

    #[test]
    fn only_an_object_is_read() {
        assert_eq!(
            read(r#"{"a": 1}"#).unwrap(),
            Pair {
                a: Some(1),
                b: vec![]
            }
        );
        assert!(
            read(r#"{"a": 1, "c": 2}"#).is_err(),
            "unknown fields still refused"
        );
        for not_an_object in ["[1, [2]]", "[null, null]", "[]", "null", "1", "\"a\""] {
            assert!(read(not_an_object).is_err(), "{not_an_object}");
        }
    }
}
