//! JSON errors with the status of who is at fault.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_core::CommandError;
use cascade_runtime::LoginError;
use serde::Serialize;

/// An error answered as `{"error": ..., "status": ..., "field": ...}`, with a
/// `Retry-After` header when waiting helps.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
    retry_after_s: Option<u64>,
}

/// Seconds a caller told "busy" waits before retrying.
const BUSY_RETRY_S: u64 = 1;

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), field: None, retry_after_s: None }
    }

    /// A 422 naming the offending field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError { field: Some(field.into()), ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message) }
    }

    /// The same error, telling the caller when to retry.
    pub fn retry_after(self, seconds: u64) -> Self {
        ApiError { retry_after_s: Some(seconds), ..self }
    }
}

/// The body of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong, for people.
    error: String,
    /// The HTTP status again.
    status: u16,
    /// The offending field of the request (a JSON path such as
    /// `data_items[0].name`), on 422.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.message, status: self.status.as_u16(), field: self.field };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Invalid(f) => ApiError::field(f.field.clone(), f.to_string()),
            CommandError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, e.to_string()),
            CommandError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            CommandError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            CommandError::Unavailable(_) => {
                tracing::error!(error = %e, "local failure");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            CommandError::TooSoon { retry_after_s, .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()).retry_after(retry_after_s)
            }
            CommandError::Busy(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).retry_after(BUSY_RETRY_S)
            }
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::BadCredentials => ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()),
            LoginError::Throttled { retry_after_s } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()).retry_after(retry_after_s)
            }
            LoginError::Busy => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).retry_after(BUSY_RETRY_S)
            }
            LoginError::Node(e) => e.into(),
        }
    }
}
