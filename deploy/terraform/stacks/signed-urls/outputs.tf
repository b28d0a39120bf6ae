output "public_url" {
  description = "The one domain of every signed link (KEYHOLE_PUBLIC_URL)."
  value       = module.cdn.public_url
}

output "files_dns_target" {
  description = "The distribution's cloudfront.net name. With DNS hosted elsewhere (dns_zone_name = null), create a CNAME (or ALIAS/ANAME at an apex) from files_domain to it; in Route 53 the stack's A/AAAA aliases point there."
  value       = module.cdn.distribution_domain_name
}

output "api_dns_target" {
  description = "The API custom domain's target (d-xxxx.execute-api.REGION.amazonaws.com): with DNS hosted elsewhere, create a CNAME from api_domain to it. null without api_domain."
  value       = module.api.domain_target
}

output "api_url" {
  description = "Base URL of the API that mints links."
  value       = module.api.api_url
}

output "key_pair_id" {
  description = "Key-Pair-Id of the active signing key."
  value       = module.signing_keys.active_key_pair_id
}

output "key_group_id" {
  description = "CloudFront key group trusted on every behaviour."
  value       = module.signing_keys.key_group_id
}

output "public_keys" {
  description = "Trusted public keys by CloudFront key id (for `keyhole verify --key ID=PEM` or a self-hosted edge)."
  value       = module.signing_keys.public_key_pems
}

output "signing_key_secret_arn" {
  description = "Secret holding the active private key."
  value       = module.private_key_secret.secret_arn
}

output "distribution_id" {
  description = "CloudFront distribution id."
  value       = module.cdn.distribution_id
}

output "files_bucket" {
  description = "Private bucket of the files."
  value       = module.files_bucket.bucket_id
}

output "metadata_table" {
  description = "DynamoDB table of file records."
  value       = module.metadata_table.table_name
}

output "function_name" {
  description = "Keyhole Lambda."
  value       = module.api.function_name
}

output "published_version" {
  description = "Lambda version published by this apply (note it: rollback pins lambda_alias_version to an earlier one)."
  value       = module.api.published_version
}

output "signer_policy_arn" {
  description = "Policy for applications that sign links themselves."
  value       = module.iam.signer_policy_arn
}

output "alarm_topic_arns" {
  description = "Alarm topics (regional, us-east-1)."
  value       = [module.monitoring.alarm_topic_arn, module.monitoring.edge_alarm_topic_arn]
}

output "dashboard" {
  description = "CloudWatch dashboard name."
  value       = module.monitoring.dashboard_name
}
