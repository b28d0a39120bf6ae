output "bucket" {
  description = "State bucket name (backend `bucket`)."
  value       = aws_s3_bucket.state.id
}

output "lock_table" {
  description = "Lock table name (backend `dynamodb_table`)."
  value       = aws_dynamodb_table.lock.name
}

output "kms_key_arn" {
  description = "KMS key encrypting the state (backend `kms_key_id`)."
  value       = module.key.key_arn
}

output "backend_config" {
  description = "A backend config file for one stack and environment; replace KEY with e.g. signed-urls/dev.tfstate."
  value       = <<-EOT
    bucket         = "${aws_s3_bucket.state.id}"
    key            = "KEY"
    region         = "${aws_s3_bucket.state.region}"
    encrypt        = true
    kms_key_id     = "${module.key.alias_arn}"
    dynamodb_table = "${aws_dynamodb_table.lock.name}"
    use_lockfile   = true
  EOT
}
