//! API Gateway HTTP API (2.0) event fixtures for every route of the file API, answered by the
//! Lambda with the same JSON as `keyhole serve` over HTTP against the same S3 bucket, DynamoDB
//! table and Secrets Manager key (moto): same status, same fields and shapes, same error codes.
//! Ids, times and signatures naturally differ, so answers are compared structurally, and
//! values where they must agree.

mod common;

use common::*;
use keyhole::server::RunningServer;
use keyhole_lambda::Lambda;
use serde_json::{json, Value};

/// Both answers to fixture `name`: the Lambda's for `lambda_id`, serve's for `serve_id`.
async fn both(
    lambda: &Lambda,
    serve: &RunningServer,
    name: &str,
    lambda_id: &str,
    serve_id: &str,
) -> (Value, Value) {
    let (ls, lv) = invoke_http(lambda, api_event(name, lambda_id)).await;
    let (ss, sv) = send_http(serve, &api_event(name, serve_id)).await;
    assert_eq!(ls, ss, "{name}: status (lambda {lv}, serve {sv})");
    assert_eq!(
        shape(&lv),
        shape(&sv),
        "{name}: shape\nlambda {lv}\nserve  {sv}"
    );
    (lv, sv)
}

async fn same_error(lambda: &Lambda, serve: &RunningServer, name: &str, status: u16, code: &str) {
    let (ls, lv) = invoke_http(lambda, api_event(name, "")).await;
    let (ss, sv) = send_http(serve, &api_event(name, "")).await;
    assert_eq!(
        (ls, ss),
        (status, status),
        "{name}: lambda {lv}, serve {sv}"
    );
    assert_eq!(lv, sv, "{name}: the same error body");
    assert_eq!(lv["success"], json!(false));
    assert_eq!(lv["error"]["code"], json!(code), "{name}: {lv}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_like_keyhole_serve() {
    let Some(moto) = moto("API Gateway fixtures against keyhole serve") else {
        return;
    };
    let mut aws = Aws::create(moto).await;
    let lambda = aws.lambda().await;
    let serve = aws.serve().await;

    // Public routes: identical answers, the key pair id from the secret, the CloudFront domain.
    let (config, serve_config) = both(&lambda, &serve, "config", "", "").await;
    assert_eq!(config, serve_config);
    assert_eq!(config["keyPairId"], json!(KEY_PAIR_ID), "{config}");
    assert_eq!(config["publicUrl"], json!(PUBLIC), "{config}");
    let (openapi, serve_openapi) = both(&lambda, &serve, "openapi", "", "").await;
    assert_eq!(openapi, serve_openapi);
    assert!(openapi["paths"]["/api/files/upload"].is_object());

    // Upload links, JSON and base64-encoded bodies as API Gateway passes them.
    let (up, serve_up) = both(&lambda, &serve, "upload", "", "").await;
    for reply in [&up, &serve_up] {
        assert_eq!(reply["method"], json!("PUT"));
        let url = reply["uploadUrl"].as_str().unwrap();
        assert!(url.starts_with(&format!("{PUBLIC}/uploads/")), "{url}");
        assert!(
            cloudfront_accepts(&aws.key, url),
            "CloudFront would refuse {url}"
        );
    }
    let (png, _) = both(&lambda, &serve, "upload-base64", "", "").await;
    assert!(
        png["fileId"].as_str().unwrap().ends_with("_scan-2026.png"),
        "{png}"
    );
    let (mp, serve_mp) = both(&lambda, &serve, "upload-multipart", "", "").await;
    assert_eq!(mp["parts"].as_array().map(Vec::len), Some(3), "{mp}");

    // The bytes arrive in S3 (as through CloudFront); the upload event marks each uploaded.
    let body = b"hello world";
    let id = up["fileId"].as_str().unwrap().to_owned();
    let serve_id = serve_up["fileId"].as_str().unwrap().to_owned();
    for file in [&id, &serve_id] {
        let etag = put_object(&lambda, file, body).await;
        assert!(
            deliver_created(&lambda, &aws, file, body.len() as u64, &etag)
                .await
                .is_empty()
        );
    }

    let (download, _) = both(&lambda, &serve, "download", &id, &serve_id).await;
    let url = download["downloadUrl"].as_str().unwrap();
    assert!(url.starts_with(&format!("{PUBLIC}/files/{id}")), "{url}");
    assert!(
        cloudfront_accepts(&aws.key, url),
        "CloudFront would refuse {url}"
    );

    let (file, serve_file) = both(&lambda, &serve, "get", &id, &serve_id).await;
    assert_eq!(file["file"]["status"], json!("uploaded"), "{file}");
    assert_eq!(
        serve_file["file"]["status"],
        json!("uploaded"),
        "{serve_file}"
    );

    // Same principal, same table: the same page of the listing, value for value.
    let (list, serve_list) = both(&lambda, &serve, "list", "", "").await;
    assert_eq!(list, serve_list);
    assert_eq!(list["files"].as_array().map(Vec::len), Some(2), "{list}");
    assert!(
        list["nextCursor"].is_string(),
        "five files, pages of two: {list}"
    );

    // Multipart: /parts asks S3 (ListParts) for parts the edge did not see. moto answers
    // ListParts with a `ListPartsResponse` root where S3 sends `ListPartsResult`, which
    // aws-sdk-s3 refuses to parse, so here both sides must simply answer alike; the parts flow
    // against an S3 that answers as S3 does is checked with s3s-fs in keyhole's
    // tests/migration.rs. Completing with no parts is refused alike.
    let mp_id = mp["fileId"].as_str().unwrap();
    let serve_mp_id = serve_mp["fileId"].as_str().unwrap();
    let (parts, serve_parts) = both(&lambda, &serve, "parts", mp_id, serve_mp_id).await;
    assert_eq!(
        parts["success"], serve_parts["success"],
        "{parts} / {serve_parts}"
    );
    assert_eq!(
        parts["error"], serve_parts["error"],
        "{parts} / {serve_parts}"
    );
    if parts["success"] == json!(true) {
        assert!(parts.to_string().contains("partNumber"), "{parts}");
    }
    let (complete, serve_complete) = both(&lambda, &serve, "complete", mp_id, serve_mp_id).await;
    assert_eq!(complete["error"]["code"], serve_complete["error"]["code"]);
    assert_eq!(complete["success"], json!(false), "{complete}");

    // Delete, each its own file: object and record go.
    let (deleted, serve_deleted) = both(&lambda, &serve, "delete", &id, &serve_id).await;
    assert_eq!(deleted, json!({"success": true}));
    assert_eq!(deleted, serve_deleted);
    assert!(!object_exists(&lambda, &id).await);
    let (status, _) = invoke_http(&lambda, api_event("get", &id)).await;
    assert_eq!(status, 404);

    // Bad inputs: the same status, code and message.
    same_error(&lambda, &serve, "bad-json", 400, "invalid_request").await;
    same_error(&lambda, &serve, "bad-id", 400, "invalid_request").await;
    same_error(&lambda, &serve, "no-token", 401, "unauthorized").await;
    same_error(&lambda, &serve, "wrong-token", 401, "unauthorized").await;
    serve.shutdown().await;
}

/// The event of `name` as it arrives after API Gateway's JWT authorizer accepted a token with
/// `sub` (the Authorization header then holds the JWT, not a Keyhole token).
fn with_jwt(name: &str, file_id: &str, sub: &str) -> Value {
    let mut event = api_event(name, file_id);
    event["headers"]["authorization"] = json!("Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl");
    event["requestContext"]["authorizer"] = json!({
        "jwt": {
            "claims": {"sub": sub, "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example", "token_use": "access"},
            "scopes": ["keyhole/files"]
        }
    });
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_the_file_routes_need_the_jwt_authorizer() {
    let Some(moto) = moto("API Gateway without KEYHOLE_TOKENS") else {
        return;
    };
    let mut aws = Aws::create(moto).await;
    let lambda = aws.lambda_with(|c| c.tokens.clear()).await;

    // No tokens and no authorizer: serve's open loopback mode does not exist here.
    let (status, reply) = invoke_http(&lambda, api_event("no-token", "")).await;
    assert_eq!(status, 401, "{reply}");
    assert_eq!(reply["error"]["code"], json!("unauthorized"));
    let (status, reply) = invoke_http(&lambda, api_event("upload", "")).await;
    assert_eq!(status, 401, "{reply}");
    // Through the API's own layers: the refusal has its request id like any other answer.
    let answer = lambda.handle(api_event("upload", "")).await.unwrap();
    assert_eq!(answer["statusCode"], json!(401), "{answer}");
    assert!(
        answer["headers"]["x-request-id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{answer}"
    );
    // The public routes answer anyway, and say that the file routes need a token.
    let (status, config) = invoke_http(&lambda, api_event("config", "")).await;
    assert_eq!(status, 200);
    assert_eq!(config["authRequired"], json!(true), "{config}");

    // Through the JWT authorizer, each subject is its own principal.
    let (status, up) = invoke_http(&lambda, with_jwt("upload", "", "user-1")).await;
    assert_eq!(status, 200, "{up}");
    let (status, mine) = invoke_http(&lambda, with_jwt("list", "", "user-1")).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["files"][0]["fileId"], up["fileId"], "{mine}");
    let (status, theirs) = invoke_http(&lambda, with_jwt("list", "", "user-2")).await;
    assert_eq!(status, 200);
    assert_eq!(theirs["files"], json!([]), "{theirs}");
    let id = up["fileId"].as_str().unwrap();
    let (status, _) = invoke_http(&lambda, with_jwt("get", id, "user-1")).await;
    assert_eq!(status, 200);
    let (status, _) = invoke_http(&lambda, with_jwt("get", id, "user-2")).await;
    assert_eq!(
        status, 404,
        "another subject's file does not exist for them"
    );

    // A token whose subject cannot be a principal is refused, on every route that needs one.
    for name in ["list", "upload"] {
        let answer = lambda.handle(with_jwt(name, "", "")).await.unwrap();
        assert_eq!(answer["statusCode"], json!(401), "{name}: {answer}");
        assert!(
            answer["body"]
                .as_str()
                .unwrap()
                .contains("no usable sub claim"),
            "{name}: {answer}"
        );
        assert!(answer["headers"]["x-request-id"].is_string(), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_cannot_be_converted_get_400_not_a_failed_invocation() {
    let Some(moto) = moto("API Gateway: malformed events") else {
        return;
    };
    let mut aws = Aws::create(moto).await;
    let lambda = aws.lambda().await;
    let mut bad_body = api_event("upload", "");
    bad_body["isBase64Encoded"] = json!(true);
    bad_body["body"] = json!("%%% not base64 %%%");
    let mut bad_scheme = api_event("config", "");
    bad_scheme["headers"]["x-forwarded-proto"] = json!("a b");
    for (what, event) in [("body", bad_body), ("scheme", bad_scheme)] {
        let (status, body) = invoke_http(&lambda, event).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{what}: {body}");
    }
    // And the function goes on answering.
    let (status, _) = invoke_http(&lambda, api_event("config", "")).await;
    assert_eq!(status, 200);
}
