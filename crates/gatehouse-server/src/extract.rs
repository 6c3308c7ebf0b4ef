//! Extractors shared by the management API and the OAuth endpoints, rejecting in the §5 error format.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Path parameters that answer 400 in the §5 format (axum's own `Path` answers `text/plain`, e.g. for
/// `/v1/keys/%FF`, whose id is not UTF-8 once decoded). The message never echoes the raw segment.
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::InvalidRequest(match e.kind() {
                ErrorKind::InvalidUtf8InPathParam { key } => {
                    format!("The path parameter `{key}` is not valid UTF-8 once percent-decoded.")
                }
                _ => "A path parameter is malformed.".to_owned(),
            })),
            Err(_) => Err(ApiError::InvalidRequest("A path parameter is malformed.".into())),
        }
    }
}
