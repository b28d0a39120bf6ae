variable "bucket_name" {
  description = "Name of the log bucket (globally unique)."
  type        = string
}

variable "allow_cloudfront_legacy_logs" {
  description = "Enable ACLs (BucketOwnerPreferred) so CloudFront standard logging can deliver here; CloudFront's legacy log delivery writes through an ACL grant. Leave false for S3 server access logs only."
  type        = bool
  default     = false
}

variable "source_bucket_arns" {
  description = "Buckets whose S3 server access logs may be delivered here (empty: any bucket of this account)."
  type        = list(string)
  default     = []
}

variable "log_retention_days" {
  description = "Days after which log objects expire."
  type        = number
  default     = 365

  validation {
    condition     = var.log_retention_days >= 1
    error_message = "Logs must be kept at least one day."
  }
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete a bucket that still holds logs."
  type        = bool
  default     = false
}
