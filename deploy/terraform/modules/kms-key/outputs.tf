output "key_arn" {
  description = "ARN of the KMS key."
  value       = aws_kms_key.this.arn
}

output "key_id" {
  description = "Id of the KMS key."
  value       = aws_kms_key.this.key_id
}

output "alias_arn" {
  description = "ARN of the key's alias."
  value       = aws_kms_alias.this.arn
}

output "key_arn_after_policy" {
  description = "The key ARN, available only once the key policy is in place. Use it where AWS checks the policy when the key is attached (CloudWatch Logs refuses to create a log group with a key it may not use)."
  value       = aws_kms_key.this.arn

  depends_on = [aws_kms_key_policy.this]
}
