//! The `bootstrap` of the Keyhole Lambda: logs as JSON lines for CloudWatch, the state built
//! once per container, then every invocation handed to [`keyhole_lambda::Lambda::handle`].

use keyhole::config::LogFormat;
use lambda_http::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let format = match std::env::var("KEYHOLE_LOG_FORMAT").ok().as_deref() {
        Some("text") => LogFormat::Text,
        _ => LogFormat::Json,
    };
    // No linger: the runtime may freeze the process as soon as an invocation returns.
    let _guard = keyhole::telemetry::init_logging(format, std::time::Duration::ZERO);
    let lambda = match keyhole_lambda::Lambda::from_env().await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return Err(e.into());
        }
    };
    let lambda = &lambda;
    lambda_http::lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // The runtime's deadline for this invocation, in epoch milliseconds.
        let deadline =
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(event.context.deadline);
        lambda
            .handle_until(event.payload, Some(deadline))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "invocation failed");
                Error::from(e)
            })
    }))
    .await
}
