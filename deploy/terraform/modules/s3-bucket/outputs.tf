output "bucket_id" {
  description = "Name of the files bucket."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the files bucket."
  value       = aws_s3_bucket.this.arn
}

output "bucket_regional_domain_name" {
  description = "Regional domain name, the CloudFront origin."
  value       = aws_s3_bucket.this.bucket_regional_domain_name
}

output "upload_prefix" {
  description = "Key prefix of Keyhole's objects."
  value       = var.upload_prefix
}
