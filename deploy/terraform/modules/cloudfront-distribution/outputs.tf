output "distribution_id" {
  description = "Id of the distribution (CloudWatch dimension DistributionId, invalidations)."
  value       = aws_cloudfront_distribution.this.id
}

output "distribution_arn" {
  description = "ARN of the distribution (bucket and key policies' AWS:SourceArn)."
  value       = aws_cloudfront_distribution.this.arn
}

output "distribution_domain_name" {
  description = "The distribution's cloudfront.net name: the alias records point at it, or, with DNS hosted elsewhere, the CNAME (or ALIAS/ANAME) record you create for domain_name."
  value       = aws_cloudfront_distribution.this.domain_name
}

output "public_url" {
  description = "https://domain_name: the origin every signed link carries (KEYHOLE_PUBLIC_URL)."
  value       = "https://${var.domain_name}"
}

output "function_arn" {
  description = "ARN of the method-binding CloudFront Function."
  value       = aws_cloudfront_function.method_binding.arn
}

output "web_acl_arn" {
  description = "The associated web ACL, if any."
  value       = aws_cloudfront_distribution.this.web_acl_id
}
