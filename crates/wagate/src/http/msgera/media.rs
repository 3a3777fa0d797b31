//! Media upload: multipart field `file`, at most 16 MB, written to media storage as it
//! arrives (never held whole in memory).

use crate::http::auth::ApiKeyAccount;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::ok;
use crate::service::Services;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;
use wagate_core::media::MAX_MEDIA_BYTES;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaBody {
    /// Reference this in send-media / send-voice.
    pub media_id: String,
    pub mime_type: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
}

/// The multipart form of an upload (documentation only).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file, at most 16 MB.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    file: String,
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("file: must be at most 16 MB")
    } else {
        ApiError::invalid(
            "file",
            format!("could not read the multipart body: {}", e.body_text()),
        )
    }
}

/// Uploads an image, video, audio file or document to send later by `mediaId`.
#[utoipa::path(post, path = "/v1/developer/media/upload", tag = "media", security(("apiKey" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = MediaBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upload_media(
    State(s): State<Services>,
    ApiKeyAccount(account): ApiKeyAccount,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Response> {
    let mut multipart = multipart.map_err(|e| {
        ApiError::invalid(
            "file",
            format!(
                "send a multipart/form-data body with a `file` field ({})",
                e.body_text()
            ),
        )
    })?;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        if field.name() != Some("file") {
            continue;
        }
        let declared = field.content_type().map(str::to_owned);
        let file_name = field.file_name().map(str::to_owned);
        // Dropped on any early return, the upload removes what it wrote.
        let mut upload = s.media.begin_media_upload().await?;
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if upload.size() + chunk.len() as u64 > MAX_MEDIA_BYTES as u64 {
                return Err(ApiError::too_large("file: must be at most 16 MB"));
            }
            upload.write(chunk).await?;
        }
        let media = s
            .media
            .finish_media_upload(&account, upload, declared.as_deref(), file_name)
            .await?;
        return Ok(ok(
            StatusCode::CREATED,
            MediaBody {
                media_id: media.id.to_string(),
                mime_type: media.mime_type,
                size: media.size,
                file_name: media.file_name,
            },
        ));
    }
    Err(ApiError::invalid(
        "file",
        "is required (multipart field `file`)",
    ))
}
