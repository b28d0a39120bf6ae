# Keyhole's AWS shape for one environment: one domain (CloudFront with a trusted key group) in
# front of a private bucket, the API that mints links (Lambda behind an HTTP API), file records
# in DynamoDB, S3 upload events and scheduled sweeps, alarms and a budget.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

# The zone of both domains, when Route 53 holds it (dns_zone_name = null: DNS hosted elsewhere,
# certificates passed in, records created by hand from the *_dns_target outputs).
data "aws_route53_zone" "this" {
  count = var.dns_zone_name != null ? 1 : 0

  name         = var.dns_zone_name
  private_zone = false
}

locals {
  name          = "${var.project}-${var.environment}"
  account_id    = data.aws_caller_identity.current.account_id
  upload_prefix = "uploads/"
  bucket_name   = "${local.name}-files-${local.account_id}"
  public_url    = "https://${var.files_domain}"
  lambda_name   = "${local.name}-api"
  zone_id       = one(data.aws_route53_zone.this[*].zone_id)
}

# --- keys ---

module "kms" {
  source = "../../modules/kms-key"

  alias                        = local.name
  description                  = "Keyhole ${var.environment}: files, records, signing key, queues, logs"
  cloudfront_distribution_arns = [module.cdn.distribution_arn]
  s3_notification_bucket_arns  = [module.files_bucket.bucket_arn]
  cloudwatch_log_group_name_patterns = [
    "/aws/lambda/${local.name}-*",
    "/aws/apigateway/${local.name}-*",
  ]
}

module "signing_keys" {
  source = "../../modules/signing-keys"

  name                   = local.name
  algorithm              = var.signing_key_algorithm
  key_slots              = var.signing_key_slots
  active_slot            = var.active_signing_key_slot
  additional_public_keys = var.additional_public_keys
}

module "private_key_secret" {
  source = "../../modules/private-key-secret"

  name            = "${var.project}/${var.environment}/signing-key"
  private_key_pem = module.signing_keys.active_private_key_pem
  key_pair_id     = module.signing_keys.active_key_pair_id
  kms_key_arn     = module.kms.key_arn
}

# --- storage and the edge ---

module "access_logs" {
  source = "../../modules/access-logs"

  bucket_name                  = "${local.name}-logs-${local.account_id}"
  allow_cloudfront_legacy_logs = true
  source_bucket_arns           = ["arn:${data.aws_partition.current.partition}:s3:::${local.bucket_name}"]
}

# S3 checks the queue when the notification is created, with a test message it must be able to
# encrypt: wait for the key policy that admits S3 as well as for the queue policy.
resource "terraform_data" "event_queue_ready" {
  input      = module.events.queue_arn
  depends_on = [module.kms]
}

module "files_bucket" {
  source = "../../modules/s3-bucket"

  bucket_name                 = local.bucket_name
  kms_key_arn                 = module.kms.key_arn
  cloudfront_distribution_arn = module.cdn.distribution_arn
  upload_prefix               = local.upload_prefix
  object_expiration_days      = var.object_expiration_days
  require_conditional_puts    = var.require_conditional_puts
  access_log_bucket           = module.access_logs.bucket_id
  access_log_prefix           = module.access_logs.s3_access_log_prefix
  cors_allowed_origins        = var.cors_allowed_origins
  event_queue_arn             = terraform_data.event_queue_ready.output
}

module "cdn" {
  source = "../../modules/cloudfront-distribution"
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  name                               = local.name
  domain_name                        = var.files_domain
  route53_zone_id                    = local.zone_id
  acm_certificate_arn                = var.acm_certificate_arn
  origin_bucket_regional_domain_name = module.files_bucket.bucket_regional_domain_name
  trusted_key_group_ids              = [module.signing_keys.key_group_id]
  price_class                        = var.price_class
  cors_allowed_origins               = var.cors_allowed_origins
  log_bucket_domain_name             = module.access_logs.bucket_domain_name
  log_prefix                         = module.access_logs.cloudfront_log_prefix
  create_web_acl                     = var.create_web_acl
}

# --- records, events, the API ---

module "metadata_table" {
  source = "../../modules/metadata-table"

  table_name             = "${local.name}-files"
  kms_key_arn            = module.kms.key_arn
  point_in_time_recovery = var.point_in_time_recovery
}

module "events" {
  source = "../../modules/upload-events"

  name                      = local.name
  kms_key_arn               = module.kms.key_arn
  bucket_arn                = module.files_bucket.bucket_arn
  function_arn              = module.api.alias_arn
  function_timeout_seconds  = 30
  sweep_schedule_expression = var.sweep_schedule_expression
}

module "iam" {
  source = "../../modules/integration-role"

  name                  = local.name
  function_name         = local.lambda_name
  secret_arn            = module.private_key_secret.secret_arn
  kms_key_arn           = module.kms.key_arn
  table_arn             = module.metadata_table.table_arn
  bucket_arn            = module.files_bucket.bucket_arn
  object_prefix         = local.upload_prefix
  event_queue_arn       = module.events.queue_arn
  dead_letter_queue_arn = module.events.dead_letter_queue_arn
  signer_principal_arns = var.signer_principal_arns
}

module "api" {
  source = "../../modules/api"

  name                     = local.name
  lambda_zip               = var.lambda_zip
  lambda_s3_bucket         = var.lambda_s3_bucket
  lambda_s3_key            = var.lambda_s3_key
  lambda_s3_object_version = var.lambda_s3_object_version
  architecture             = var.lambda_architecture
  memory_mb                = var.lambda_memory_mb
  timeout_seconds          = 30
  reserved_concurrency     = var.lambda_reserved_concurrency
  alias_version            = var.lambda_alias_version
  role_arn                 = module.iam.lambda_role_arn
  kms_key_arn              = module.kms.key_arn_after_policy
  dead_letter_queue_arn    = module.events.dead_letter_queue_arn
  log_retention_days       = var.log_retention_days
  cors_allowed_origins     = var.cors_allowed_origins
  jwt_issuer               = var.jwt_issuer
  jwt_audience             = var.jwt_audience
  domain_name              = var.api_domain
  route53_zone_id          = local.zone_id
  certificate_arn          = var.api_certificate_arn

  public_url = local.public_url
  table_name = module.metadata_table.table_name
  secret_arn = module.private_key_secret.secret_arn
  # The record's object key already starts with uploads/, so the store has no prefix of its own:
  # objects land at uploads/{fileId}, where CloudFront writes and reads them.
  storage_url = "s3://${module.files_bucket.bucket_id}"

  environment_variables = merge(
    var.lambda_environment,
    {
      KEYHOLE_UPLOAD_TTL   = var.upload_ttl
      KEYHOLE_DOWNLOAD_TTL = var.download_ttl
      KEYHOLE_RETENTION    = var.retention
    },
    length(var.cors_allowed_origins) > 0 ? { KEYHOLE_CORS_ORIGINS = join(",", var.cors_allowed_origins) } : {},
  )
}

# --- watching it ---

module "monitoring" {
  source = "../../modules/monitoring"
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  name                   = local.name
  function_name          = module.api.function_name
  api_id                 = module.api.api_id
  api_stage              = module.api.stage_name
  distribution_id        = module.cdn.distribution_id
  table_name             = module.metadata_table.table_name
  bucket_name            = module.files_bucket.bucket_id
  event_queue_name       = module.events.queue_name
  dead_letter_queue_name = module.events.dead_letter_queue_name
  alarm_email            = var.alarm_email
  monthly_budget_usd     = var.monthly_budget_usd
  project_tag            = var.project
}
