output "secret_arn" {
  description = "ARN of the secret (for KEYHOLE_KEY=secretsmanager://ARN and IAM policies)."
  value       = aws_secretsmanager_secret.this.arn
}

output "secret_name" {
  description = "Name of the secret."
  value       = aws_secretsmanager_secret.this.name
}

output "secret_version_id" {
  description = "Version id of the stored key; changes when the key rotates."
  value       = aws_secretsmanager_secret_version.this.version_id
}
