variable "name" {
  description = "Name prefix, e.g. `keyhole-dev`; the function is NAME-api."
  type        = string
}

variable "lambda_zip" {
  description = "The Lambda package built by scripts/build-lambda.sh (`cargo lambda build --release --output-format zip`). A relative path is resolved from the directory Terraform runs in. Ignored (and may be null) when lambda_s3_bucket is set."
  type        = string
  default     = "../../../../target/lambda/keyhole-lambda/bootstrap.zip"
}

variable "lambda_s3_bucket" {
  description = "Bucket holding the Lambda package (the same zip), in the function's region, instead of a local lambda_zip: for pipelines and Service Catalog products that publish one artifact per release. The deploying principal needs s3:GetObject on it."
  type        = string
  default     = null

  validation {
    condition     = var.lambda_s3_bucket != null || var.lambda_zip != null
    error_message = "Give the Lambda package: lambda_zip (a local file) or lambda_s3_bucket and lambda_s3_key."
  }
}

variable "lambda_s3_key" {
  description = "Key of the Lambda package in lambda_s3_bucket. Use one key per release (e.g. keyhole-lambda/v1.4.0/bootstrap.zip) or pass lambda_s3_object_version: Terraform redeploys the code only when one of the three changes."
  type        = string
  default     = null

  validation {
    condition     = (var.lambda_s3_bucket == null) == (var.lambda_s3_key == null)
    error_message = "lambda_s3_bucket and lambda_s3_key go together."
  }
}

variable "lambda_s3_object_version" {
  description = "Version of the package object in a versioned lambda_s3_bucket; null takes the current one."
  type        = string
  default     = null

  validation {
    condition     = var.lambda_s3_object_version == null || var.lambda_s3_bucket != null
    error_message = "lambda_s3_object_version needs lambda_s3_bucket and lambda_s3_key."
  }
}

variable "architecture" {
  description = "x86_64 (what `cargo lambda build` produces by default) or arm64 (built with --arm64)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "memory_mb" {
  description = "Lambda memory (CPU scales with it)."
  type        = number
  default     = 512

  validation {
    condition     = var.memory_mb >= 128 && var.memory_mb <= 10240
    error_message = "Lambda memory is 128 to 10240 MB."
  }
}

variable "timeout_seconds" {
  description = "Lambda timeout; API Gateway gives up after 30 s anyway."
  type        = number
  default     = 30
}

variable "reserved_concurrency" {
  description = "Concurrent executions reserved for (and capping) the function."
  type        = number
  default     = 100
}

variable "alias_version" {
  description = "Function version the `live` alias serves; null serves the version this apply publishes. Set it to an earlier version to roll back without rebuilding."
  type        = string
  default     = null
}

variable "role_arn" {
  description = "Execution role (integration-role module)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key for the environment variables and the log groups."
  type        = string
}

variable "dead_letter_queue_arn" {
  description = "Dead-letter queue for failed asynchronous invocations (the sweep schedule)."
  type        = string
}

variable "public_url" {
  description = "KEYHOLE_PUBLIC_URL: the CloudFront domain every link carries, e.g. https://files.dev.example.com."
  type        = string
}

variable "table_name" {
  description = "DynamoDB table of file records (KEYHOLE_METADATA=dynamodb://NAME)."
  type        = string
}

variable "storage_url" {
  description = "KEYHOLE_STORAGE: s3://BUCKET[/PREFIX]. The record's object key (uploads/{id}) is appended to the prefix, so s3://BUCKET puts objects where CloudFront reads and writes them."
  type        = string

  validation {
    condition     = startswith(var.storage_url, "s3://")
    error_message = "storage_url must be an s3:// URL."
  }
}

variable "secret_arn" {
  description = "Secret holding the signing key (KEYHOLE_KEY=secretsmanager://ARN)."
  type        = string
}

variable "environment_variables" {
  description = "More KEYHOLE_* settings (upload TTL, retention, CORS origins, tokens ...); see docs/configuration.md."
  type        = map(string)
  default     = {}
}

variable "cors_allowed_origins" {
  description = "Browser origins allowed to call the API. Empty disables CORS."
  type        = list(string)
  default     = []
}

variable "throttling_burst_limit" {
  description = "API Gateway burst limit."
  type        = number
  default     = 5000
}

variable "throttling_rate_limit" {
  description = "API Gateway steady-state requests per second."
  type        = number
  default     = 10000
}

variable "log_retention_days" {
  description = "Retention of the function's logs and the API access logs."
  type        = number
  default     = 365
}

variable "jwt_issuer" {
  description = "OIDC issuer URL (e.g. https://cognito-idp.REGION.amazonaws.com/POOL_ID) for a JWT authorizer in front of the API; null leaves authentication to Keyhole's bearer tokens."
  type        = string
  default     = null
}

variable "jwt_audience" {
  description = "Accepted JWT audiences (Cognito: the app client ids)."
  type        = list(string)
  default     = []
}

variable "domain_name" {
  description = "Custom domain of the API, e.g. files-api.dev.example.com; null keeps only the execute-api endpoint."
  type        = string
  default     = null
}

variable "route53_zone_id" {
  description = "Hosted zone for domain_name (certificate validation and alias records). null when the domain's DNS is hosted elsewhere: then certificate_arn is required and the record pointing domain_name at domain_target is yours to create."
  type        = string
  default     = null
}

variable "certificate_arn" {
  description = "An existing ACM certificate for domain_name in the API's region; null creates and DNS-validates one in route53_zone_id."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)."
  }

  validation {
    condition     = var.certificate_arn == null || var.domain_name != null
    error_message = "certificate_arn is for domain_name; it means nothing without one."
  }

  validation {
    condition     = var.domain_name == null || var.certificate_arn != null || var.route53_zone_id != null
    error_message = "With domain_name and no route53_zone_id (DNS hosted elsewhere) pass certificate_arn: a certificate can be DNS-validated here only in a Route 53 zone."
  }
}
