//! The JSON response body of incident lists and single incidents (create,
//! get, update, transition; `routes::incidents::with_etag`): the
//! same JSON as `web::Json` writes, written by sonic-rs, whose SIMD string
//! escaping replaces serde_json's byte-at-a-time loop. A list page of 50
//! incidents is about 56 KB of JSON, and serde_json's escaping was 12 % of
//! its instructions (bench/RESULTS.md, ninth session).

use actix_web::body::BoxBody;
use actix_web::{HttpRequest, HttpResponse, Responder, ResponseError};
use serde::Serialize;

use crate::error::ApiError;

/// About how many bytes of JSON one incident takes (a seeded one, with a
/// paragraph of description, takes 1.1 KB; SLA targets add some), so that
/// a body's buffer is allocated once instead of grown, and copied, as it
/// fills: `sonic_rs::to_vec` starts at 128 bytes, and a 56 KB page was
/// copied a dozen times on the way (9 % of a PostgreSQL list page's
/// instructions; bench/RESULTS.md, thirteenth session).
pub const INCIDENT_JSON_BYTES: usize = 1536;

/// A `200 OK` with `T` as its JSON body, which takes about `.1` bytes (a
/// hint: a larger body still fits).
#[derive(Debug)]
pub struct Reply<T>(pub T, pub usize);

impl<T: Serialize> Responder for Reply<T> {
    type Body = BoxBody;

    fn respond_to(self, _req: &HttpRequest) -> HttpResponse {
        match to_json(&self.0, self.1) {
            Ok(body) => HttpResponse::Ok()
                .content_type(mime::APPLICATION_JSON)
                .body(body),
            // Keel's views always serialize; were one not to, the client
            // gets the problem document of an internal error, as from
            // `web::Json`'s 500.
            Err(e) => ApiError::internal(e).error_response(),
        }
    }
}

/// `value` as JSON, as [`Reply`] writes it, in a buffer of `capacity`
/// bytes to start with.
pub fn to_json<T: Serialize + ?Sized>(
    value: &T,
    capacity: usize,
) -> Result<Vec<u8>, sonic_rs::Error> {
    let mut body = Vec::with_capacity(capacity);
    sonic_rs::to_writer(&mut body, value)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;
    use actix_web::test::TestRequest;

    #[derive(Serialize)]
    struct View {
        title: &'static str,
        missing: Option<u8>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        tags: Vec<&'static str>,
        ratio: f64,
        keys: std::collections::BTreeMap<&'static str, &'static str>,
    }

    #[test]
    fn a_reply_is_the_same_json_as_serde_json_writes() {
        let view = View {
            title: "Quotes \" and \\ backslashes,\n a tab\t, a bell \u{7}, \u{2028} and ünïcödé",
            missing: None,
            skipped: None,
            tags: vec![
                "vpn",
                "</script>",
                "",
                "a\"b",
                "c\\d",
                "\u{1f}",
                "\u{7f} and ü",
            ],
            ratio: 0.1,
            keys: [
                ("plain", "1"),
                ("k\"ey", "2"),
                ("ключ", "3"),
                ("", "4"),
                ("tab\t", "5"),
            ]
            .into_iter()
            .collect(),
        };
        let expected = serde_json::to_vec(&view).unwrap_or_default();
        let req = TestRequest::default().to_http_request();
        // The size hint is only where the buffer starts: too small, nothing,
        // or roomy, the body is the same.
        for hint in [0, 8, 4096] {
            let resp = Reply(&view, hint).respond_to(&req);
            assert_eq!(resp.status(), actix_web::http::StatusCode::OK);
            assert_eq!(
                resp.headers().get("content-type").map(|v| v.as_bytes()),
                Some(&b"application/json"[..])
            );
            let body = resp.into_body().try_into_bytes().unwrap_or_default();
            assert_eq!(body.as_ref(), expected.as_slice(), "hint {hint}");
        }
    }
}
