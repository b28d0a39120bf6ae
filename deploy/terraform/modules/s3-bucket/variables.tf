variable "bucket_name" {
  description = "Name of the files bucket (globally unique)."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for default encryption (its policy must admit the distribution's Origin Access Control)."
  type        = string
}

variable "cloudfront_distribution_arn" {
  description = "The only distribution admitted through Origin Access Control (bucket policy AWS:SourceArn)."
  type        = string
}

variable "upload_prefix" {
  description = "Key prefix of Keyhole's objects (`uploads/`): CloudFront may read and write only here."
  type        = string
  default     = "uploads/"

  validation {
    condition     = can(regex("^[a-z0-9-]+/$", var.upload_prefix))
    error_message = "upload_prefix is a single lower-case folder ending in '/'."
  }
}

variable "object_expiration_days" {
  description = "Lifecycle backstop: delete objects under the prefix this many days after upload (0 keeps them). Keyhole's sweep deletes on time; set this to the retention rounded up plus one day."
  type        = number
  default     = 2

  validation {
    condition     = var.object_expiration_days >= 0
    error_message = "object_expiration_days cannot be negative."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days a deleted or overwritten object's previous version is kept (versioning is always on)."
  type        = number
  default     = 7
}

variable "glacier_transition_days" {
  description = "Move objects to Glacier Flexible Retrieval after this many days; null disables the transition (only useful with long retentions)."
  type        = number
  default     = null
}

variable "access_log_bucket" {
  description = "Bucket receiving S3 server access logs for this bucket."
  type        = string
}

variable "access_log_prefix" {
  description = "Prefix of this bucket's access logs in access_log_bucket."
  type        = string
  default     = "s3/"
}

variable "cors_allowed_origins" {
  description = "Browser origins allowed to upload and download directly (S3 answers the CORS preflight that CloudFront forwards). Empty disables CORS."
  type        = list(string)
  default     = []
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete a bucket that still holds files."
  type        = bool
  default     = false
}

variable "event_queue_arn" {
  description = "SQS queue that receives s3:ObjectCreated:* events for the upload prefix (Keyhole marks records uploaded from them). Its queue policy must already admit this bucket."
  type        = string
}

variable "require_conditional_puts" {
  description = "Refuse the distribution a whole-file PUT without If-None-Match (S3's conditional write: an upload link can never replace a stored file). Its function sets the header; turn this off only if first PUTs through CloudFront get 403 (the header not reaching S3)."
  type        = bool
  default     = true
}
