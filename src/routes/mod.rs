//! HTTP routes, one file per concern, following the URLs. Handlers are thin: parse the
//! request, call the `UploadService`, map the answer. No store type appears here.
//! The native API sits beside this file; other protocols are adapters in their own folder
//! (`tus/`), reached through `files.rs`, which tells them apart at `/files/`.

mod access;
mod body;
mod chunk;
mod cors;
mod direct;
mod events;
mod expect;
mod files;
mod form;
mod health;
mod processing;
mod tus;
mod ui;
mod uploads;
pub(crate) mod views;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::{ApiError, ErrorCode};

pub use access::{CreatorAccess, ProcessorAccess, UploadAccess};
pub use body::{BodyGuard, BodyLimits, UploadBody};
pub use cors::cors;
pub use expect::continue_or_refuse;

/// Largest JSON body accepted (creation requests carry at most 4 KiB of metadata).
const JSON_LIMIT: usize = 64 * 1024;

/// Which optional routes to serve.
#[derive(Debug, Clone, Copy)]
pub struct RouteOptions {
    /// Serve the upload page at `/` (`server.ui`).
    pub upload_page: bool,
}

/// The route table.
pub fn configure(cfg: &mut web::ServiceConfig, options: RouteOptions) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(JSON_LIMIT)
            .error_handler(|err, _| ApiError::new(ErrorCode::InvalidRequest, err.to_string()).into()),
    )
    .service(
        web::scope("/v1/uploads")
            .service(resource("").route(web::post().to(uploads::create)))
            .service(resource("/form").route(web::post().to(form::upload)))
            .service(
                resource("/{upload_id}").route(web::get().to(uploads::status)).route(web::delete().to(uploads::cancel)),
            )
            .service(resource("/{upload_id}/resume").route(web::post().to(uploads::resume)))
            .service(resource("/{upload_id}/processing").route(web::post().to(processing::report)))
            .service(resource("/{upload_id}/events").route(web::get().to(events::follow)))
            .service(resource("/{upload_id}/chunks/{index}").route(web::put().to(chunk::put)))
            .service(resource("/{upload_id}/parts").route(web::post().to(direct::page)))
            .service(resource("/{upload_id}/complete").route(web::post().to(direct::complete)))
            .service(resource("/{upload_id}/direct/{part}").route(web::put().to(direct::put))),
    )
    // Every method goes to one handler: the protocol and its endpoint come from the
    // headers too (`X-HTTP-Method-Override`, `Tus-Resumable`), not only the method.
    .service(web::resource([tus::MOUNT, "/files/"]).route(web::route().to(files::serve)))
    .service(web::resource("/files/{upload}").route(web::route().to(files::serve)))
    .service(resource("/healthz").route(web::get().to(health::healthz)))
    .service(resource("/readyz").route(web::get().to(health::readyz)))
    .service(resource("/metrics").route(web::get().to(health::metrics)))
    .service(resource("/client/{file}").route(web::get().to(ui::client_file)).route(web::head().to(ui::client_file)))
    .default_service(web::to(not_found));
    if options.upload_page {
        cfg.service(resource("/").route(web::get().to(ui::page)).route(web::head().to(ui::page)));
    }
}

/// A resource that answers unknown methods with a problem, not an empty 405.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::NotFound, format!("nothing is served at {}", req.path())))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::MethodNotAllowed, format!("{} is not allowed on {}", req.method(), req.path())))
}
