//! Every error leaves Keel as `application/problem+json` (RFC 9457) with a
//! stable `code`. Domain errors are mapped by class in one place; 5xx bodies
//! say nothing internal while the log carries the cause.

use std::sync::LazyLock;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use keel_core::{DomainError, ErrorClass};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "https://keel.invalid/problems/incident.invalid_transition",
    "title": "Conflict",
    "status": 409,
    "detail": "cannot `close` an incident that is `in_progress`",
    "code": "incident.invalid_transition"
}))]
pub struct Problem {
    /// A URI naming the problem type; ends with the code.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// Stable machine-readable code, `area.what`.
    pub code: String,
    /// The request field the problem is about, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error on its way to becoming a problem response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub detail: String,
    pub field: Option<String>,
    pub retry_after: Option<u64>,
    /// The full cause, logged for 5xx and never sent.
    pub cause: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            detail: detail.into(),
            field: None,
            retry_after: None,
            cause: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 422: the request breaks a rule about `field`.
    pub fn unprocessable(code: &str, field: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail).with_field(field)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "auth.forbidden", detail)
    }

    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an unexpected error occurred",
        );
        e.cause = Some(cause.to_string());
        e
    }

    /// Maps any domain error by its class.
    pub fn from_domain<E: DomainError + ?Sized>(e: &E) -> Self {
        let status = match e.class() {
            ErrorClass::Malformed => StatusCode::BAD_REQUEST,
            ErrorClass::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorClass::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorClass::Forbidden => StatusCode::FORBIDDEN,
            ErrorClass::NotFound => StatusCode::NOT_FOUND,
            ErrorClass::Conflict => StatusCode::CONFLICT,
            ErrorClass::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ErrorClass::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            ErrorClass::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut out = if status.is_server_error() {
            let mut x = ApiError::new(
                status,
                e.code(),
                match status {
                    StatusCode::SERVICE_UNAVAILABLE => {
                        "the service is temporarily unavailable; retry shortly"
                    }
                    _ => "an unexpected error occurred",
                },
            );
            x.cause = Some(error_chain(e));
            x
        } else {
            ApiError::new(status, e.code(), e.to_string())
        };
        out.field = e.field().map(str::to_owned);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            out.retry_after = Some(5);
        }
        out
    }

    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("https://keel.invalid/problems/{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.clone(),
            field: self.field.clone(),
        }
    }
}

fn error_chain<E: std::error::Error + ?Sized>(e: &E) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status.is_server_error() {
            tracing::error!(code = %self.code, cause = self.cause.as_deref().unwrap_or(""), "request failed");
        }
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        if let Some(s) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        res.body(serde_json::to_vec(&self.problem()).unwrap_or_default())
    }
}

macro_rules! from_domain {
    ($($t:ty),*) => {$(
        impl From<$t> for ApiError {
            fn from(e: $t) -> Self {
                ApiError::from_domain(&e)
            }
        }
    )*};
}
from_domain!(
    keel_store::StoreError,
    keel_auth::AuthError,
    keel_incident::IncidentError,
    keel_core::people::PeopleError,
    keel_core::query::QueryError
);

impl From<keel_auth::AuthError> for Box<ApiError> {
    fn from(e: keel_auth::AuthError) -> Self {
        Box::new(ApiError::from(e))
    }
}

/// Problem for a JSON body actix could not read.
pub fn json_error(err: actix_web::error::JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    let e = match &err {
        J::OverflowKnownLength { .. } | J::Overflow { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request.too_large",
            "the request body is too large",
        ),
        J::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request.unsupported_media_type",
            "send the body as application/json",
        ),
        J::Deserialize(d) => ApiError::bad_request("validation.invalid_json", d.to_string()),
        _ => ApiError::bad_request(
            "validation.invalid_json",
            "the request body could not be read",
        ),
    };
    e.into()
}

/// Problem for a query string actix could not read.
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    ApiError::bad_request("query.invalid_parameter", err.to_string()).into()
}

/// Problem for a path actix could not read.
pub fn path_error(err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::not_found(&format!("resource ({err})")).into()
}

/// Each documented path template, split into segments, with the methods the
/// OpenAPI document declares for it as an `Allow` value (`GET, POST`).
static ALLOWED: LazyLock<Vec<(Vec<String>, String)>> = LazyLock::new(|| {
    crate::openapi()
        .paths
        .paths
        .iter()
        .map(|(path, item)| {
            let methods: Vec<&str> = [
                ("GET", item.get.is_some()),
                ("HEAD", item.head.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("PATCH", item.patch.is_some()),
                ("DELETE", item.delete.is_some()),
                ("OPTIONS", item.options.is_some()),
            ]
            .into_iter()
            .filter_map(|(m, declared)| declared.then_some(m))
            .collect();
            (
                path.split('/').map(str::to_owned).collect(),
                methods.join(", "),
            )
        })
        .collect()
});

/// The methods allowed on `path`: those the document declares for the
/// template it matches (`{x}` matches any one segment). Paths outside the
/// document (the served document itself, the API reference) are GET only.
fn allowed_methods(path: &str) -> &'static str {
    let segments: Vec<&str> = path.split('/').collect();
    ALLOWED
        .iter()
        .find(|(template, _)| {
            template.len() == segments.len()
                && template.iter().zip(&segments).all(|(t, s)| {
                    t == s || (t.starts_with('{') && t.ends_with('}') && !s.is_empty())
                })
        })
        .map_or("GET", |(_, methods)| methods.as_str())
}

/// Unmatched requests: 405 with `Allow` when the path exists with other
/// methods, else 404.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    if req.resource_map().has_resource(req.path()) {
        let mut res = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "route.method_not_allowed",
            format!("{} is not allowed here", req.method()),
        )
        .error_response();
        res.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static(allowed_methods(req.path())),
        );
        return res;
    }
    ApiError::new(StatusCode::NOT_FOUND, "route.not_found", "no such route").error_response()
}

/// Safety net: any error response that is not already problem+json (from
/// actix itself, say) is rewritten as one.
pub fn problemize<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let code = match status {
        StatusCode::NOT_FOUND => "route.not_found",
        StatusCode::METHOD_NOT_ALLOWED => "route.method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "request.too_large",
        StatusCode::REQUEST_TIMEOUT => "request.timeout",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "request.unsupported_media_type",
        s if s.is_server_error() => "internal",
        _ => "request.invalid",
    };
    let detail = res
        .response()
        .error()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let detail = if status.is_server_error() || detail.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        detail
    };
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), "server error response");
    }
    let problem = ApiError::new(status, code, detail).problem();
    let (req, mut res) = res.into_parts();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    let res = res.set_body(serde_json::to_string(&problem).unwrap_or_default());
    let res: ServiceResponse<EitherBody<B, BoxBody>> = ServiceResponse::new(req, res)
        .map_into_boxed_body()
        .map_into_right_body();
    Ok(ErrorHandlerResponse::Response(res))
}
