//! JSON request bodies: [`Json`], the extractor every handler with a body uses.
//!
//! It is actix-web's JSON extractor (the same size limit, content type check and error
//! answers, `JsonConfig` per resource), with one rule more: the body is a JSON object. A
//! derived `Deserialize` also reads a struct from an array of its fields in order
//! (`["04A2B9C1D2", 7]` as an unlock), which the OpenAPI document does not allow and no
//! client should rely on.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::error::ApiError;

/// A request body that is a JSON object of type `T`.
pub struct Json<T>(T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let raw = web::Json::<Box<RawValue>>::from_request(req, payload);
        Box::pin(async move {
            let raw = raw.await?.into_inner();
            Ok(Json(object(raw.get())?))
        })
    }
}

/// Reads `text`, a JSON object, as a `T`.
pub fn object<T: DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    if !text.trim_start().starts_with('{') {
        return Err(ApiError::bad_request(
            "malformed_body",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_str(text).map_err(|e| invalid(&e))
}

/// The answer to a body that does not read as the type it should.
///
/// The one place a message decides anything: serde_json reports an unknown field (from
/// `deny_unknown_fields`) only in its message, under the same `Category::Data` as a wrong
/// type. Both answers are 400; only the code differs, and a test pins each.
pub fn invalid(error: &serde_json::Error) -> ApiError {
    let message = error.to_string();
    if message.contains("unknown field") {
        ApiError::bad_request("unknown_field", message)
    } else {
        ApiError::bad_request("malformed_body", message)
    }
}
