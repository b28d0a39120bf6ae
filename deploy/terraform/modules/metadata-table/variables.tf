variable "table_name" {
  description = "Name of the file-record table, e.g. `keyhole-dev-files`."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for server-side encryption."
  type        = string
}

variable "point_in_time_recovery" {
  description = "Keep continuous backups (35 days of point-in-time recovery)."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Refuse DeleteTable until this is turned off."
  type        = bool
  default     = true
}
