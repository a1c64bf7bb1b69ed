//! Who may do what: upload tokens and API keys.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn calls_on_an_upload_without_a_token_are_unauthorized() {
    let app = spawn_app();
    let up = app.create(10, None).await;
    let url = app.url(&format!("/v1/uploads/{}", up.id));
    assert_problem(app.client.get(&url).send().await.unwrap(), StatusCode::UNAUTHORIZED, "missing-token").await;
    let basic = app.client.get(&url).header("Authorization", "Basic Zm9vOmJhcg==").send().await.unwrap();
    assert_problem(basic, StatusCode::UNAUTHORIZED, "missing-token").await;
    let chunk = app.client.put(format!("{url}/chunks/0")).body(vec![0u8; 10]).send().await.unwrap();
    assert_problem(chunk, StatusCode::UNAUTHORIZED, "missing-token").await;
    assert_problem(app.client.delete(&url).send().await.unwrap(), StatusCode::UNAUTHORIZED, "missing-token").await;
    let resume = app.client.post(format!("{url}/resume")).send().await.unwrap();
    assert_problem(resume, StatusCode::UNAUTHORIZED, "missing-token").await;
}

#[tokio::test]
async fn a_wrong_token_or_another_uploads_token_is_forbidden() {
    let app = spawn_app();
    let mine = app.create(10, None).await;
    let theirs = app.create(10, None).await;
    let forged = Upload { token: "AAAA".repeat(11), ..mine.clone() };
    assert_problem(app.status(&forged).await, StatusCode::FORBIDDEN, "invalid-token").await;
    let borrowed = Upload { token: theirs.token.clone(), ..mine.clone() };
    assert_problem(app.status(&borrowed).await, StatusCode::FORBIDDEN, "invalid-token").await;
    assert_problem(app.put_chunk(&borrowed, 0, &[0u8; 10]).await, StatusCode::FORBIDDEN, "invalid-token").await;
    assert_problem(app.cancel(&borrowed).await, StatusCode::FORBIDDEN, "invalid-token").await;
    assert_eq!(app.status(&mine).await.status(), StatusCode::OK, "nothing happened to the upload");
}

#[tokio::test]
async fn a_token_from_another_server_secret_is_forbidden() {
    let app = spawn_app();
    let other = spawn_app();
    let up = other.create(10, None).await;
    let stranger = app.create(10, None).await;
    let replayed = Upload { id: stranger.id.clone(), token: up.token, ..stranger };
    assert_problem(app.status(&replayed).await, StatusCode::FORBIDDEN, "invalid-token").await;
}

#[tokio::test]
async fn an_unknown_upload_with_a_valid_token_is_not_found() {
    let app = spawn_app();
    let secret = std::fs::read_to_string(app.dir.join("sessions/auth-secret")).unwrap();
    let secret = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, secret.trim()).unwrap();
    let id = ferry::domain::UploadId::new();
    let token = ferry::auth::TokenSigner::new(&secret).issue(&id);
    let ghost = Upload { id: id.to_string(), token, key: String::new(), chunk_size: CHUNK, total_chunks: 1 };
    assert_problem(app.status(&ghost).await, StatusCode::NOT_FOUND, "upload-not-found").await;
    assert_problem(app.resume(&ghost).await, StatusCode::NOT_FOUND, "upload-not-found").await;
    assert_problem(app.cancel(&ghost).await, StatusCode::NOT_FOUND, "upload-not-found").await;
    assert_problem(app.put_chunk(&ghost, 0, b"x").await, StatusCode::NOT_FOUND, "upload-not-found").await;
    let not_an_id = Upload { id: "not-a-uuid".into(), ..ghost };
    assert_problem(app.status(&not_an_id).await, StatusCode::NOT_FOUND, "upload-not-found").await;
}

#[tokio::test]
async fn api_keys_guard_creation_when_configured() {
    let app = spawn_app_with(|s| s.auth.api_keys = vec!["key-one".into(), "key-two".into()]);
    let body = json!({"filename": "a", "size": 10});
    let response = app.post_json("/v1/uploads", &body).await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "missing-token").await;
    let response = app.client.post(app.url("/v1/uploads")).bearer_auth("key-three").json(&body).send().await.unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "invalid-token").await;
    let response = app.client.post(app.url("/v1/uploads")).bearer_auth("key-two").json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(b"hi".to_vec()).file_name("a.txt"));
    let response = app.client.post(app.url("/v1/uploads/form")).multipart(form).send().await.unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "missing-token").await;
}
