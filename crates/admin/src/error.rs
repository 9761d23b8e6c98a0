//! JSON errors with the status of who is at fault.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_core::CommandError;
use cascade_runtime::LoginError;
use serde_json::json;

/// An error answered as `{"error": ..., "status": ..., "field": ...}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), field: None }
    }

    /// A 422 naming the offending field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: message.into(),
            field: Some(field.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message, "status": self.status.as_u16() });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        (self.status, Json(body)).into_response()
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
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::BadCredentials => ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()),
            LoginError::Busy => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            LoginError::Node(e) => e.into(),
        }
    }
}
