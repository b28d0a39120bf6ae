//! Telling the three kinds of invocation apart by their shape: API Gateway HTTP API (payload
//! version 2.0) requests, SQS batches (of S3 upload notifications) and the scheduler's sweep
//! request. Anything else is refused with a description of its type, never its content.

use serde_json::Value;

/// One invocation, classified.
#[derive(Debug)]
pub enum Event {
    /// An API Gateway HTTP API request (payload format 2.0).
    Http(Box<lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest>),
    /// A batch of SQS messages (the `Records` of an SQS event).
    Sqs(Vec<Value>),
    /// The scheduled sweep.
    Sweep,
}

/// Why an event cannot be handled.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The event matches none of the shapes this function handles.
    #[error("unrecognised event: {0}; this function handles API Gateway HTTP API (2.0) requests, SQS batches of S3 notifications and the keyhole.scheduler sweep")]
    Unrecognised(String),
    /// The event has a known shape but cannot be read as it.
    #[error("malformed {kind}: {message}")]
    Malformed {
        /// Which kind it looked like.
        kind: &'static str,
        /// What is wrong (from the parser; no payload).
        message: String,
    },
}

/// Most SQS messages accepted in one invocation: Lambda's own ceiling for a batch, so anything
/// larger was not sent by an event source mapping.
pub const MAX_SQS_BATCH: usize = 10_000;

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A short, safe label: only a bounded run of `[A-Za-z0-9:._ -]`, so no payload leaks.
fn label(v: Option<&Value>) -> Option<String> {
    let s = v?.as_str()?;
    let ok = s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" :._-".contains(&b));
    ok.then(|| s.to_owned())
}

/// Classifies an event by its shape.
pub fn classify(event: Value) -> Result<Event, EventError> {
    let mut map = match event {
        Value::Object(map) => map,
        other => {
            return Err(EventError::Unrecognised(format!(
                "{} rather than a JSON object",
                kind_of(&other)
            )))
        }
    };
    if map.get("version").and_then(Value::as_str) == Some("2.0")
        && map
            .get("requestContext")
            .and_then(|c| c.get("http"))
            .is_some()
    {
        let request =
            serde_json::from_value(Value::Object(map)).map_err(|e| EventError::Malformed {
                kind: "API Gateway HTTP API request",
                message: e.to_string(),
            })?;
        return Ok(Event::Http(Box::new(request)));
    }
    if map.get("source").and_then(Value::as_str) == Some("keyhole.scheduler") {
        let task = map.get("detail").and_then(|d| d.get("task"));
        return match (map.get("detail-type").and_then(Value::as_str), task.and_then(Value::as_str)) {
            (Some("Keyhole Sweep"), Some("sweep")) => Ok(Event::Sweep),
            _ => Err(EventError::Unrecognised(format!(
                "a keyhole.scheduler event with detail-type {:?} and task {:?} (expected \"Keyhole Sweep\" and \"sweep\")",
                label(map.get("detail-type")).unwrap_or_else(|| "?".into()),
                label(task).unwrap_or_else(|| "?".into()),
            ))),
        };
    }
    if let Some(Value::Array(records)) = map.remove("Records") {
        let source = records.first().and_then(|r| label(r.get("eventSource")));
        return match source.as_deref() {
            Some("aws:sqs") => {
                if records.len() > MAX_SQS_BATCH {
                    return Err(EventError::Malformed {
                        kind: "SQS batch",
                        message: format!(
                            "{} messages, more than the {MAX_SQS_BATCH} Lambda ever batches",
                            records.len()
                        ),
                    });
                }
                Ok(Event::Sqs(records))
            }
            Some("aws:s3") => Err(EventError::Unrecognised(
                "an S3 notification delivered directly; upload events must come through the SQS queue (deploy/terraform/modules/upload-events)".into(),
            )),
            Some(other) => Err(EventError::Unrecognised(format!(
                "a Records event from {other}"
            ))),
            None if records.is_empty() => {
                Err(EventError::Unrecognised("a Records event with no records".into()))
            }
            None => Err(EventError::Unrecognised(
                "a Records event without an eventSource".into(),
            )),
        };
    }
    if let Some(source) = label(map.get("source")) {
        return Err(EventError::Unrecognised(format!(
            "an event from source {source}"
        )));
    }
    if map.get("version").is_some() && map.get("requestContext").is_some() {
        return Err(EventError::Unrecognised(
            "an API Gateway request of another payload version (the integration must use 2.0)"
                .into(),
        ));
    }
    Err(EventError::Unrecognised(format!(
        "a JSON object with {} fields",
        map.len()
    )))
}
