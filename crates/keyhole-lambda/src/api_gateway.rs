//! API Gateway HTTP API requests (payload format 2.0) through the same axum router as
//! `keyhole serve`'s `/api` (keyhole's [`api_router`](keyhole::server::api_router)): the event
//! becomes an `http::Request` with `lambda_http`'s own conversion, the router answers, and the
//! answer becomes the 2.0 response shape.
//!
//! Authentication: a request that passed API Gateway's JWT authorizer acts as the token's
//! `sub` claim; otherwise `KEYHOLE_TOKENS` bearer tokens are checked as `keyhole serve` checks
//! them. With neither, every route that needs a principal (the file routes) answers 401, and
//! `/api/config` says `authRequired: true`: `serve`'s "no tokens only on loopback" rule has no
//! loopback to fall back to here. Refusals go through the router like any other answer, so
//! they carry a request id and are logged and counted.

use axum::body::Body as AxumBody;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use base64::Engine;
use keyhole::auth::{Principal, Refused};
use keyhole::http::ApiError;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_http::aws_lambda_events::encodings::Body as LambdaBody;
use lambda_http::request::LambdaRequest;
use tower::ServiceExt;

/// Largest response body returned: Lambda refuses synchronous responses over 6 MB, so a larger
/// one is answered with a clear error instead of failing the invocation.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024 - 64 * 1024;

/// Longest JWT `sub` accepted as a principal (the limit token principals have too).
const MAX_PRINCIPAL: usize = 128;

/// The principal API Gateway's JWT authorizer verified, if the request went through it.
fn jwt_principal(request: &ApiGatewayV2httpRequest) -> Option<Result<Principal, Refused>> {
    let jwt = request.request_context.authorizer.as_ref()?.jwt.as_ref()?;
    let sub = jwt.claims.get("sub");
    Some(match sub {
        Some(sub)
            if !sub.is_empty()
                && sub.len() <= MAX_PRINCIPAL
                && !sub.chars().any(char::is_control) =>
        {
            Ok(Principal(sub.clone()))
        }
        _ => Err(Refused(
            "the token has no usable sub claim (1 to 128 printable characters)".to_owned(),
        )),
    })
}

/// Answers one API Gateway request with `router` (keyhole's API router).
pub async fn handle(router: &Router, request: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let jwt = jwt_principal(&request);
    let Some(mut http_request) = to_http(request) else {
        return into_gateway_response(
            ApiError::bad_request(
                "the request could not be read (its body is not the base64 it is marked as, or \
                 its host, scheme or query is malformed)",
            )
            .into_response(),
        )
        .await;
    };
    // Either way through the router, so the answer has its request id, log line and metrics:
    // a refused principal is answered 401 by the routes that need one, and so (with neither
    // tokens nor the authorizer) is a request without claims.
    match jwt {
        Some(Ok(principal)) => {
            http_request.extensions_mut().insert(principal);
        }
        Some(Err(refused)) => {
            http_request.extensions_mut().insert(refused);
        }
        None => {}
    }
    let response = call(router, http_request).await;
    into_gateway_response(response).await
}

/// `lambda_http`'s conversion of the event, which panics on what it cannot convert (a body
/// marked base64 that is not, a host or query that makes no URL): `None` then, answered 400.
/// API Gateway sends neither in practice; a client must not be able to fail the invocation.
fn to_http(request: ApiGatewayV2httpRequest) -> Option<http::Request<lambda_http::Body>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        LambdaRequest::ApiGatewayV2(request).into()
    }))
    .ok()
}

async fn call(
    router: &Router,
    request: http::Request<lambda_http::Body>,
) -> axum::response::Response {
    match router.clone().oneshot(request.map(AxumBody::new)).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

fn is_text(content_type: Option<&HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let mime = ct.split(';').next().unwrap_or_default().trim();
    mime.starts_with("text/") || mime == "application/json" || mime.ends_with("+json")
}

/// The HTTP API 2.0 response for an axum response: text bodies as they are, others base64,
/// `Set-Cookie` headers as `cookies`.
pub async fn into_gateway_response(response: axum::response::Response) -> ApiGatewayV2httpResponse {
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_RESPONSE_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "response body too large for Lambda or unreadable");
            let (p, b) = ApiError::new(
                StatusCode::BAD_GATEWAY,
                "response_too_large",
                "the answer is larger than a Lambda response may be; ask for less (e.g. a smaller limit)",
            )
            .into_response()
            .into_parts();
            parts = p;
            axum::body::to_bytes(b, MAX_RESPONSE_BYTES)
                .await
                .unwrap_or_default()
        }
    };
    let cookies = parts
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    parts.headers.remove(header::SET_COOKIE);
    let text = is_text(parts.headers.get(header::CONTENT_TYPE));
    let (body, is_base64_encoded) = if bytes.is_empty() {
        (None, false)
    } else {
        match (text, String::from_utf8(bytes.to_vec())) {
            (true, Ok(s)) => (Some(LambdaBody::Text(s)), false),
            _ => (
                Some(LambdaBody::Text(
                    base64::engine::general_purpose::STANDARD.encode(&bytes),
                )),
                true,
            ),
        }
    };
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(parts.status.as_u16());
    out.headers = one_value_per_name(&parts.headers);
    out.body = body;
    out.is_base64_encoded = is_base64_encoded;
    out.cookies = cookies;
    out
}

/// The 2.0 response's `headers` hold one value per name, so a header given more than once
/// (`Vary`, say) is joined with commas, as HTTP allows for every header but `Set-Cookie` (which
/// goes in `cookies`). Values that are not visible ASCII are dropped, as `lambda_http` would
/// fail the whole response over them.
fn one_value_per_name(headers: &http::HeaderMap) -> http::HeaderMap {
    let mut out = http::HeaderMap::with_capacity(headers.keys_len());
    for name in headers.keys() {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            continue;
        }
        if let Ok(value) = HeaderValue::from_str(&values.join(", ")) {
            out.insert(name.clone(), value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn repeated_headers_are_joined_and_cookies_kept_apart() {
        let response = axum::response::Response::builder()
            .header(header::VARY, "origin")
            .header(header::VARY, "accept-encoding")
            .header(header::SET_COOKIE, "a=1")
            .header(header::SET_COOKIE, "b=2")
            .header(header::CONTENT_TYPE, "application/json")
            .body(AxumBody::from("{}"))
            .unwrap();
        let out = into_gateway_response(response).await;
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["headers"]["vary"], "origin, accept-encoding", "{json}");
        assert_eq!(json["headers"]["content-type"], "application/json");
        assert!(json["headers"].get("set-cookie").is_none(), "{json}");
        assert_eq!(json["cookies"], serde_json::json!(["a=1", "b=2"]));
    }

    #[test]
    fn json_is_text_and_octets_are_not() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert!(is_text(Some(&v("application/json"))));
        assert!(is_text(Some(&v("text/plain; charset=utf-8"))));
        assert!(is_text(Some(&v("application/problem+json"))));
        assert!(!is_text(Some(&v("application/octet-stream"))));
        assert!(is_text(None));
    }
}
