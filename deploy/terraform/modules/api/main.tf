# The API that mints links: the Keyhole Lambda (the same handlers as `keyhole serve`) behind an
# API Gateway HTTP API with the contract's routes. The function is published and served through
# the `live` alias, so a rollback is one alias move (alias_version).

data "aws_region" "current" {}

locals {
  function_name = "${var.name}-api"
  jwt           = var.jwt_issuer != null
  # The package from S3 when a bucket is given (the local zip is then never read), else the zip.
  package_from_s3 = var.lambda_s3_bucket != null

  # The contract's routes (design §5). Public ones need no token by contract.
  routes = {
    "POST /api/files/upload"            = { public = false }
    "GET /api/files/download/{fileId}"  = { public = false }
    "GET /api/files"                    = { public = false }
    "GET /api/files/{fileId}"           = { public = false }
    "DELETE /api/files/{fileId}"        = { public = false }
    "GET /api/files/{fileId}/parts"     = { public = false }
    "POST /api/files/{fileId}/complete" = { public = false }
    "GET /api/config"                   = { public = true }
    "GET /api/openapi.json"             = { public = true }
  }

  environment = merge(
    {
      KEYHOLE_LOG_FORMAT = "json"
      RUST_LOG           = "info"
    },
    var.environment_variables,
    {
      KEYHOLE_PUBLIC_URL = var.public_url
      KEYHOLE_METADATA   = "dynamodb://${var.table_name}"
      KEYHOLE_STORAGE    = var.storage_url
      KEYHOLE_KEY        = "secretsmanager://${var.secret_arn}"
    },
  )
}

# --- logs ---

resource "aws_cloudwatch_log_group" "function" {
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_cloudwatch_log_group" "access" {
  name              = "/aws/apigateway/${var.name}-api"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

# --- function ---

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_117:The function reaches only AWS public endpoints (S3, DynamoDB, Secrets Manager, SQS) with IAM-signed TLS requests; there is nothing in a VPC to reach, and a VPC would add NAT or four interface endpoints per AZ for no isolation gain.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile and a signing step in the release pipeline; the zip is built by CI from the locked Cargo workspace and deployed by that pipeline. Tracked as a follow-up in docs/deployment.md.
  function_name                  = local.function_name
  description                    = "Keyhole API, S3 upload events and sweeps"
  role                           = var.role_arn
  runtime                        = "provided.al2023"
  handler                        = "bootstrap"
  architectures                  = [var.architecture]
  filename                       = local.package_from_s3 ? null : var.lambda_zip
  source_code_hash               = local.package_from_s3 ? null : filebase64sha256(var.lambda_zip)
  s3_bucket                      = var.lambda_s3_bucket
  s3_key                         = var.lambda_s3_key
  s3_object_version              = var.lambda_s3_object_version
  memory_size                    = var.memory_mb
  timeout                        = var.timeout_seconds
  reserved_concurrent_executions = var.reserved_concurrency
  kms_key_arn                    = var.kms_key_arn
  publish                        = true

  environment {
    variables = local.environment
  }

  tracing_config {
    mode = "Active"
  }

  dead_letter_config {
    target_arn = var.dead_letter_queue_arn
  }

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.function.name
  }
}

resource "aws_lambda_alias" "live" {
  name             = "live"
  description      = "The version API Gateway, the upload-event queue and the sweep schedule invoke"
  function_name    = aws_lambda_function.this.function_name
  function_version = var.alias_version != null ? var.alias_version : aws_lambda_function.this.version
}

# The only asynchronous invocation is the scheduled sweep. A failed pass (a file it could not
# remove) is not retried at once: the next scheduled pass is the retry, and Lambda's default two
# retries would only run the whole pass twice more. The failure still counts in the function's
# errors and goes to the dead-letter queue, so a file that keeps failing is seen.
resource "aws_lambda_function_event_invoke_config" "live" {
  function_name                = aws_lambda_function.this.function_name
  qualifier                    = aws_lambda_alias.live.name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 900
}

# --- HTTP API ---

resource "aws_apigatewayv2_api" "this" {
  name                         = "${var.name}-api"
  description                  = "Keyhole file API"
  protocol_type                = "HTTP"
  disable_execute_api_endpoint = var.domain_name != null

  # API Gateway answers preflights itself and replaces the function's CORS headers, so these
  # are what browsers get: the part of `keyhole serve`'s lists (crates/keyhole/src/server.rs)
  # that concerns a JSON API. A page may send and read the request id the server logs, and read
  # Retry-After on a 429 or 503; the range and conditional headers belong to file transfers,
  # which go to the files domain, not here.
  dynamic "cors_configuration" {
    for_each = length(var.cors_allowed_origins) > 0 ? [1] : []
    content {
      allow_origins  = var.cors_allowed_origins
      allow_methods  = ["GET", "POST", "DELETE", "OPTIONS"]
      allow_headers  = ["authorization", "content-type", "x-request-id"]
      expose_headers = ["content-length", "retry-after", "x-request-id"]
      max_age        = 600
    }
  }
}

resource "aws_apigatewayv2_integration" "lambda" {
  api_id                 = aws_apigatewayv2_api.this.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_alias.live.invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 30000
}

resource "aws_apigatewayv2_authorizer" "jwt" {
  count = local.jwt ? 1 : 0

  api_id           = aws_apigatewayv2_api.this.id
  name             = "${var.name}-jwt"
  authorizer_type  = "JWT"
  identity_sources = ["$request.header.Authorization"]

  jwt_configuration {
    issuer   = var.jwt_issuer
    audience = var.jwt_audience
  }
}

resource "aws_apigatewayv2_route" "this" {
  #checkov:skip=CKV_AWS_309:GET /api/config and /api/openapi.json are public by contract; the other routes use the JWT authorizer when jwt_issuer is set and otherwise Keyhole's own bearer-token check inside the function (design §6), which API Gateway cannot see.
  for_each = local.routes

  api_id             = aws_apigatewayv2_api.this.id
  route_key          = each.key
  target             = "integrations/${aws_apigatewayv2_integration.lambda.id}"
  authorization_type = local.jwt && !each.value.public ? "JWT" : "NONE"
  authorizer_id      = local.jwt && !each.value.public ? aws_apigatewayv2_authorizer.jwt[0].id : null
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.this.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_burst_limit   = var.throttling_burst_limit
    throttling_rate_limit    = var.throttling_rate_limit
    detailed_metrics_enabled = true
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.access.arn
    format = jsonencode({
      requestId          = "$context.requestId"
      requestTime        = "$context.requestTime"
      ip                 = "$context.identity.sourceIp"
      userAgent          = "$context.identity.userAgent"
      httpMethod         = "$context.httpMethod"
      routeKey           = "$context.routeKey"
      path               = "$context.path"
      status             = "$context.status"
      protocol           = "$context.protocol"
      responseLength     = "$context.responseLength"
      responseLatency    = "$context.responseLatency"
      integrationLatency = "$context.integrationLatency"
      integrationStatus  = "$context.integrationStatus"
      integrationError   = "$context.integrationErrorMessage"
      authorizerError    = "$context.authorizer.error"
      principal          = "$context.authorizer.claims.sub"
    })
  }
}

resource "aws_lambda_permission" "api" {
  statement_id  = "api-gateway"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this.function_name
  qualifier     = aws_lambda_alias.live.name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.this.execution_arn}/*/*"
}

# --- optional custom domain (regional certificate, TLS 1.2) ---
# The certificate is created and DNS-validated in route53_zone_id unless certificate_arn brings
# one; the alias records are created only in a Route 53 zone (elsewhere, point domain_name at
# the domain_target output).

locals {
  create_certificate = var.domain_name != null && var.certificate_arn == null
  certificate_arn    = var.certificate_arn != null ? var.certificate_arn : one(aws_acm_certificate_validation.api[*].certificate_arn)
}

resource "aws_acm_certificate" "api" {
  count = local.create_certificate ? 1 : 0

  domain_name       = var.domain_name
  validation_method = "DNS"

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_route53_record" "api_validation" {
  for_each = local.create_certificate ? {
    for option in aws_acm_certificate.api[0].domain_validation_options : option.domain_name => option
  } : {}

  zone_id         = var.route53_zone_id
  name            = each.value.resource_record_name
  type            = each.value.resource_record_type
  records         = [each.value.resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

resource "aws_acm_certificate_validation" "api" {
  count = local.create_certificate ? 1 : 0

  certificate_arn         = aws_acm_certificate.api[0].arn
  validation_record_fqdns = [for record in aws_route53_record.api_validation : record.fqdn]
}

resource "aws_apigatewayv2_domain_name" "this" {
  count = var.domain_name != null ? 1 : 0

  domain_name = var.domain_name

  domain_name_configuration {
    certificate_arn = local.certificate_arn
    endpoint_type   = "REGIONAL"
    security_policy = "TLS_1_2"
  }
}

resource "aws_apigatewayv2_api_mapping" "this" {
  count = var.domain_name != null ? 1 : 0

  api_id      = aws_apigatewayv2_api.this.id
  domain_name = aws_apigatewayv2_domain_name.this[0].id
  stage       = aws_apigatewayv2_stage.default.id
}

resource "aws_route53_record" "api_alias" {
  for_each = var.domain_name != null && var.route53_zone_id != null ? toset(["A", "AAAA"]) : toset([])

  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = each.key

  alias {
    name                   = aws_apigatewayv2_domain_name.this[0].domain_name_configuration[0].target_domain_name
    zone_id                = aws_apigatewayv2_domain_name.this[0].domain_name_configuration[0].hosted_zone_id
    evaluate_target_health = false
  }
}
