//! `POST /v1/uploads/form`: a whole file in one `multipart/form-data` request, streamed.

use std::io;

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use futures_util::StreamExt;

use super::views::Status;
use super::CreatorAccess;
use crate::domain::Metadata;
use crate::error::{ApiError, ErrorCode};
use crate::startup::AppState;
use crate::upload::{FormFile, UploadService, MAX_METADATA_BYTES};

/// The form field that carries the file.
const FILE_FIELD: &str = "file";

#[tracing::instrument(name = "Receive a form upload", skip_all)]
pub async fn upload(_: CreatorAccess, form: Multipart, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let service = &state.service;
    let mut metadata = Metadata::new();
    let mut file = None;
    let read = read_form(form, service, &mut metadata, &mut file).await;
    let file = match (read, file) {
        (Ok(()), Some(file)) => file,
        (Ok(()), None) => return Err(invalid("the form has no `file` field")),
        (Err(err), stored) => {
            if let Some(stored) = stored {
                service.discard_form_file(stored).await;
            }
            return Err(err);
        }
    };
    let status = service.register_form_upload(file, metadata).await?;
    let token = state.tokens.issue(&status.record.id);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/uploads/{}", status.record.id)))
        .json(Status::new(&status).with_token(token)))
}

/// Streams the `file` field into storage and keeps the text fields as metadata.
async fn read_form(
    mut form: Multipart,
    service: &UploadService,
    metadata: &mut Metadata,
    file: &mut Option<FormFile>,
) -> Result<(), ApiError> {
    let mut text_bytes = 0;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| invalid(&format!("the form is malformed: {e}")))?;
        let name = field.name().unwrap_or_default().to_owned();
        if name == FILE_FIELD {
            if file.is_some() {
                return Err(invalid("the form has more than one `file` field"));
            }
            let filename = field.content_disposition().and_then(|cd| cd.get_filename()).unwrap_or("file").to_owned();
            let content_type = field.content_type().map(|m| m.to_string());
            let body = (&mut field)
                .map(|piece| piece.map_err(|e| io::Error::new(io::ErrorKind::ConnectionAborted, e.to_string())))
                .boxed_local();
            *file = Some(service.store_form_file(&filename, content_type, body).await?);
        } else {
            let mut value = Vec::new();
            while let Some(piece) = field.next().await {
                let piece = piece.map_err(|e| invalid(&format!("the form is malformed: {e}")))?;
                text_bytes += piece.len();
                if text_bytes > MAX_METADATA_BYTES {
                    return Err(invalid(&format!("text fields must total at most {MAX_METADATA_BYTES} bytes")));
                }
                value.extend_from_slice(&piece);
            }
            let value = String::from_utf8(value).map_err(|_| invalid("text fields must be UTF-8"))?;
            metadata.insert(name, value);
        }
    }
    Ok(())
}

fn invalid(detail: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, detail)
}
