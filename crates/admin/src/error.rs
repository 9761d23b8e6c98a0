//! JSON errors with the right status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_runtime::CatalogError;
use serde_json::json;

/// An error answered as `{"error": ..., "field": ...}`.
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

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Invalid(f) => ApiError::field(f.field.clone(), f.to_string()),
            CatalogError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            CatalogError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            CatalogError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, e.to_string()),
            CatalogError::Node(e) => {
                tracing::error!(error = %e, "node error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}
