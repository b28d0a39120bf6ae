variable "alias" {
  description = "Alias name without the `alias/` prefix, e.g. `keyhole-dev`."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9/_-]+$", var.alias)) && !startswith(var.alias, "aws/")
    error_message = "The alias may hold letters, digits, '/', '_' and '-', and must not start with aws/."
  }
}

variable "description" {
  description = "What the key protects; shown in the KMS console."
  type        = string
}

variable "deletion_window_in_days" {
  description = "Waiting period before a scheduled key deletion takes effect (7-30 days)."
  type        = number
  default     = 30

  validation {
    condition     = var.deletion_window_in_days >= 7 && var.deletion_window_in_days <= 30
    error_message = "KMS accepts a deletion window of 7 to 30 days."
  }
}

variable "rotation_period_in_days" {
  description = "Automatic key material rotation period (90-2560 days)."
  type        = number
  default     = 365
}

variable "cloudfront_distribution_arns" {
  description = "Distributions whose Origin Access Control may encrypt and decrypt S3 objects with this key."
  type        = list(string)
  default     = []
}

variable "s3_notification_bucket_arns" {
  description = "Buckets whose event notifications may be written to SQS queues encrypted with this key."
  type        = list(string)
  default     = []
}

variable "cloudwatch_log_group_name_patterns" {
  description = "Log group names (wildcards allowed, e.g. `/aws/lambda/keyhole-dev-*`) that CloudWatch Logs may encrypt with this key."
  type        = list(string)
  default     = []
}

variable "allow_cloudwatch_alarms" {
  description = "Let CloudWatch alarms publish to SNS topics encrypted with this key."
  type        = bool
  default     = false
}

variable "allow_budgets" {
  description = "Let AWS Budgets publish to SNS topics encrypted with this key."
  type        = bool
  default     = false
}
