//! The browser side: the client module and the upload page ferry serves.

use reqwest::{header, StatusCode};

use crate::helpers::*;

#[tokio::test]
async fn the_client_module_is_javascript_that_exports_upload() {
    let app = spawn_app();
    let response = app.client.get(app.url("/client/ferry.js")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
    assert_eq!(response.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(response.headers().contains_key(header::ETAG));
    let body = response.text().await.unwrap();
    assert!(body.contains("export function upload("), "ferry.js exports upload");
    assert!(!body.lines().any(|line| line.starts_with("import ")), "the module has no dependencies");
}

#[tokio::test]
async fn the_page_is_served_at_the_root_with_a_strict_content_security_policy() {
    let app = spawn_app();
    let response = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline") && !csp.contains("http"), "only ferry itself: {csp}");
    let page = response.text().await.unwrap();
    assert!(page.contains(r#"<script type="module" src="client/app.js"></script>"#));
    assert!(page.contains(r#"type="file""#));
    assert!(!page.contains("<script>") && !page.contains(" style="), "no inline script or style");
    assert!(!page.contains("//cdn") && !page.contains("https://"), "nothing from elsewhere");
}

#[tokio::test]
async fn the_page_script_and_styles_are_served_with_their_types() {
    let app = spawn_app();
    for (path, content_type) in [
        ("/client/app.js", "text/javascript; charset=utf-8"),
        ("/client/ferry.css", "text/css; charset=utf-8"),
        ("/client/favicon.svg", "image/svg+xml"),
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()[header::CONTENT_TYPE], content_type, "{path}");
    }
    let app_js = app.client.get(app.url("/client/app.js")).send().await.unwrap().text().await.unwrap();
    assert!(app_js.contains("from './ferry.js'"), "the page uses the served module");
}

#[tokio::test]
async fn an_unchanged_file_is_not_sent_again() {
    let app = spawn_app();
    let first = app.client.get(app.url("/client/ferry.js")).send().await.unwrap();
    let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
    let again = app.client.get(app.url("/client/ferry.js")).header(header::IF_NONE_MATCH, &etag).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[header::ETAG].to_str().unwrap(), etag);
    assert!(again.bytes().await.unwrap().is_empty());

    let stale = app.client.get(app.url("/")).header(header::IF_NONE_MATCH, &etag).send().await.unwrap();
    assert_eq!(stale.status(), StatusCode::OK, "another file's tag does not match");
}

#[tokio::test]
async fn unknown_client_files_and_other_methods_get_problems() {
    let app = spawn_app();
    let missing = app.client.get(app.url("/client/../Cargo.toml")).send().await.unwrap();
    assert_problem(missing, StatusCode::NOT_FOUND, "not-found").await;
    let missing = app.client.get(app.url("/client/nothing.js")).send().await.unwrap();
    assert_problem(missing, StatusCode::NOT_FOUND, "not-found").await;
    let post = app.client.post(app.url("/")).send().await.unwrap();
    assert_problem(post, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
    let head = app.client.head(app.url("/client/ferry.js")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
}

#[tokio::test]
async fn with_the_page_turned_off_only_the_client_module_is_served() {
    let app = spawn_app_with(|s| s.server.ui = false);
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_problem(page, StatusCode::NOT_FOUND, "not-found").await;
    let module = app.client.get(app.url("/client/ferry.js")).send().await.unwrap();
    assert_eq!(module.status(), StatusCode::OK);
    assert_eq!(module.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
}

#[test]
fn the_page_is_on_by_default() {
    assert!(ferry::config::Settings::default().server.ui);
}

#[test]
fn the_page_can_be_turned_off_in_the_settings_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.toml");
    std::fs::write(&path, "[server]\nui = false\n").unwrap();
    assert!(!ferry::config::Settings::load(Some(&path)).unwrap().server.ui);
}
