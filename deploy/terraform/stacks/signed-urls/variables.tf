# --- identity and tags (required) ---

variable "environment" {
  description = "Environment name; also the Environment tag."
  type        = string

  validation {
    condition     = contains(["infra-test", "dev", "test", "prod"], var.environment)
    error_message = "environment must be infra-test, dev, test or prod."
  }
}

variable "allowed_account_ids" {
  description = "AWS account(s) this environment may be applied to; the provider refuses any other, so a wrong profile cannot touch another environment."
  type        = list(string)
}

variable "owner" {
  description = "Owner tag: the team answerable for the environment."
  type        = string
}

variable "cost_center" {
  description = "CostCenter tag."
  type        = string
}

# --- domains (required) ---

variable "dns_zone_name" {
  description = "Route 53 public hosted zone that holds the domains below, e.g. dev.example.com: certificate validation records and A/AAAA aliases go there. null when DNS is hosted elsewhere: then pass acm_certificate_arn (and api_certificate_arn with an api_domain) and create the records from the files_dns_target and api_dns_target outputs."
  type        = string
}

variable "files_domain" {
  description = "The one domain customers whitelist; every signed link uses it (CloudFront), e.g. files.dev.example.com."
  type        = string
}

variable "api_domain" {
  description = "Custom domain of the API that mints links, e.g. files-api.dev.example.com; null keeps only the execute-api endpoint."
  type        = string
}

variable "acm_certificate_arn" {
  description = "An existing ACM certificate for files_domain in us-east-1 (CloudFront's region); null creates one and validates it in dns_zone_name. Required when dns_zone_name is null."
  type        = string
  default     = null

  validation {
    condition     = var.acm_certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:us-east-1:[0-9]{12}:certificate/.+$", var.acm_certificate_arn))
    error_message = "acm_certificate_arn must be an ACM certificate in us-east-1 (arn:aws:acm:us-east-1:ACCOUNT:certificate/ID): CloudFront uses no other region."
  }

  validation {
    condition     = var.acm_certificate_arn != null || var.dns_zone_name != null
    error_message = "With dns_zone_name = null (DNS hosted elsewhere) pass acm_certificate_arn for files_domain: Terraform can validate a certificate only in a Route 53 zone."
  }
}

variable "api_certificate_arn" {
  description = "An existing ACM certificate for api_domain in the stack's region; null creates one and validates it in dns_zone_name. Required when dns_zone_name is null and api_domain is set."
  type        = string
  default     = null

  validation {
    condition     = var.api_certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.api_certificate_arn))
    error_message = "api_certificate_arn must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID) in the stack's region."
  }

  validation {
    condition     = var.api_certificate_arn == null || var.api_domain != null
    error_message = "api_certificate_arn is the certificate of api_domain; set api_domain too, or drop it."
  }

  validation {
    condition     = var.api_certificate_arn != null || var.dns_zone_name != null || var.api_domain == null
    error_message = "With dns_zone_name = null (DNS hosted elsewhere) and an api_domain, pass api_certificate_arn, or set api_domain = null to keep only the execute-api endpoint."
  }
}

# --- sizing and durability (required: they differ per environment) ---

variable "lambda_memory_mb" {
  description = "Memory of the Lambda."
  type        = number
}

variable "point_in_time_recovery" {
  description = "DynamoDB point-in-time recovery of the file records."
  type        = bool
}

variable "price_class" {
  description = "CloudFront price class."
  type        = string
}

variable "alarm_email" {
  description = "Address that receives alarms (null: none; subscribe something to the topics instead)."
  type        = string
}

variable "monthly_budget_usd" {
  description = "Monthly cost budget of the environment."
  type        = number
}

# --- optional ---

variable "project" {
  description = "Project tag and name prefix."
  type        = string
  default     = "keyhole"
}

variable "region" {
  description = "Region of the bucket, table, Lambda and API."
  type        = string
  default     = "eu-west-1"
}

variable "extra_tags" {
  description = "More default tags (the four required ones always win)."
  type        = map(string)
  default     = {}
}

variable "lambda_zip" {
  description = "Lambda package from scripts/build-lambda.sh, relative to this directory. Ignored (and may be null) when lambda_s3_bucket is set."
  type        = string
  default     = "../../../../target/lambda/keyhole-lambda/bootstrap.zip"
}

variable "lambda_s3_bucket" {
  description = "Bucket (in var.region) holding the Lambda package, instead of lambda_zip: a release artifact published once, as the Service Catalog product uses it."
  type        = string
  default     = null
}

variable "lambda_s3_key" {
  description = "Key of the Lambda package in lambda_s3_bucket, one per release (e.g. keyhole-lambda/v1.4.0/bootstrap.zip)."
  type        = string
  default     = null
}

variable "lambda_s3_object_version" {
  description = "Version of the package object in a versioned lambda_s3_bucket; null takes the current one."
  type        = string
  default     = null
}

variable "lambda_architecture" {
  description = "x86_64 or arm64 (match the build)."
  type        = string
  default     = "x86_64"
}

variable "lambda_reserved_concurrency" {
  description = "Concurrent executions reserved for the Lambda."
  type        = number
  default     = 100
}

variable "lambda_alias_version" {
  description = "Pin the `live` alias to an earlier published version (rollback); null serves the newest."
  type        = string
  default     = null
}

variable "log_retention_days" {
  description = "Retention of the Lambda and API access logs."
  type        = number
  default     = 365
}

variable "upload_ttl" {
  description = "Lifetime of upload links (KEYHOLE_UPLOAD_TTL)."
  type        = string
  default     = "15m"
}

variable "download_ttl" {
  description = "Lifetime of download links (KEYHOLE_DOWNLOAD_TTL)."
  type        = string
  default     = "1h"
}

variable "retention" {
  description = "How long uploaded files are kept (KEYHOLE_RETENTION); keep object_expiration_days above it."
  type        = string
  default     = "24h"
}

variable "require_conditional_puts" {
  description = "Refuse CloudFront a whole-file PUT without If-None-Match in the bucket policy (write-once through S3's conditional write). Turn off only if first PUTs through CloudFront get 403: see docs/deployment.md, known gaps."
  type        = bool
  default     = true
}

variable "object_expiration_days" {
  description = "S3 lifecycle backstop for objects (days); the sweep deletes on time."
  type        = number
  default     = 2
}

variable "lambda_environment" {
  description = "More KEYHOLE_* settings for the Lambda (docs/configuration.md), e.g. KEYHOLE_TOKENS = \"billing:3f2a...\" for bearer tokens stored hashed. The backends and the public URL are set by the stack and cannot be overridden here."
  type        = map(string)
  default     = {}
}

variable "cors_allowed_origins" {
  description = "Browser origins allowed to call the API and transfer files directly."
  type        = list(string)
  default     = []
}

variable "jwt_issuer" {
  description = "OIDC issuer for an API Gateway JWT authorizer (Cognito or any OIDC); null leaves authentication to Keyhole's bearer tokens."
  type        = string
  default     = null
}

variable "jwt_audience" {
  description = "Accepted JWT audiences."
  type        = list(string)
  default     = []
}

variable "signing_key_algorithm" {
  description = "RSA (2048) or ECDSA (P-256)."
  type        = string
  default     = "RSA"
}

variable "signing_key_slots" {
  description = "Generated signing keys; two during a rotation."
  type        = set(string)
  default     = ["a"]
}

variable "active_signing_key_slot" {
  description = "The slot that signs new links."
  type        = string
  default     = "a"
}

variable "additional_public_keys" {
  description = "More public keys (PEM) CloudFront trusts, by name."
  type        = map(string)
  default     = {}
}

variable "signer_principal_arns" {
  description = "Principals of applications allowed to assume the signer role."
  type        = list(string)
  default     = []
}

variable "create_web_acl" {
  description = "Create and associate a WAF web ACL with the distribution."
  type        = bool
  default     = true
}

variable "sweep_schedule_expression" {
  description = "When expired files are swept."
  type        = string
  default     = "rate(15 minutes)"
}
