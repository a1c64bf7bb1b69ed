//! `POST /v1/uploads/form`: a whole file in one `multipart/form-data` request, streamed.

use std::io;

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::views::Status;
use super::{CreatorAccess, UploadBody};
use crate::domain::Metadata;
use crate::error::{ApiError, ErrorCode};
use crate::startup::AppState;
use crate::upload::{Caller, FormFile, NewFormFile, Protocol, UploadService, MAX_METADATA_BYTES};

/// The form field that carries the file.
const FILE_FIELD: &str = "file";

/// Most fields in one form, the file included.
const MAX_FIELDS: usize = 64;

#[tracing::instrument(name = "Receive a form upload", skip_all)]
pub async fn upload(
    access: CreatorAccess,
    req: HttpRequest,
    body: UploadBody,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let service = &state.service;
    let (body, guard) = body.split();
    let form = Multipart::new(req.headers(), body);
    let mut metadata = Metadata::new();
    let mut file = None;
    let caller = access.caller(Protocol::Form);
    let read = read_form(form, service, &caller, &mut metadata, &mut file).await.map_err(|e| guard.explain(e));
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

/// Streams the `file` field into storage, with the text fields before it as its metadata,
/// and leaves those after it in `metadata`.
async fn read_form(
    mut form: Multipart,
    service: &UploadService,
    caller: &Caller,
    metadata: &mut Metadata,
    file: &mut Option<FormFile>,
) -> Result<(), ApiError> {
    // Names count with values: both end up in the stored metadata.
    let mut text_bytes = 0;
    let mut fields = 0;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| invalid(&format!("the form is malformed: {e}")))?;
        fields += 1;
        if fields > MAX_FIELDS {
            return Err(invalid(&format!("a form may have at most {MAX_FIELDS} fields")));
        }
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
            let new =
                NewFormFile { filename, content_type, metadata: std::mem::take(metadata), caller: caller.clone() };
            *file = Some(service.store_form_file(new, body).await?);
        } else {
            text_bytes += name.len();
            if text_bytes > MAX_METADATA_BYTES {
                return Err(too_much_text());
            }
            let mut value = Vec::new();
            while let Some(piece) = field.next().await {
                let piece = piece.map_err(|e| invalid(&format!("the form is malformed: {e}")))?;
                text_bytes += piece.len();
                if text_bytes > MAX_METADATA_BYTES {
                    return Err(too_much_text());
                }
                value.extend_from_slice(&piece);
            }
            let value = String::from_utf8(value).map_err(|_| invalid("text fields must be UTF-8"))?;
            metadata.insert(name, value);
        }
    }
    Ok(())
}

fn too_much_text() -> ApiError {
    invalid(&format!("the text fields' names and values must total at most {MAX_METADATA_BYTES} bytes"))
}

fn invalid(detail: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, detail)
}
