output "bucket_id" {
  description = "Name of the log bucket; available once its policy admits log delivery."
  value       = aws_s3_bucket.this.id

  depends_on = [aws_s3_bucket_policy.this]
}

output "bucket_arn" {
  description = "ARN of the log bucket."
  value       = aws_s3_bucket.this.arn
}

output "bucket_domain_name" {
  description = "Bucket domain name, the form CloudFront's logging_config expects; available once ACLs are enabled (CloudFront refuses a log bucket without them)."
  value       = aws_s3_bucket.this.bucket_domain_name

  depends_on = [aws_s3_bucket_ownership_controls.this, aws_s3_bucket_policy.this]
}

output "s3_access_log_prefix" {
  description = "Prefix under which S3 server access logs must be delivered (the bucket policy admits only this prefix)."
  value       = "s3/"
}

output "cloudfront_log_prefix" {
  description = "Prefix for CloudFront standard logs."
  value       = "cloudfront/"
}
