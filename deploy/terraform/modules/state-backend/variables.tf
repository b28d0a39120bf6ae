variable "bucket_name" {
  description = "Name of the state bucket (globally unique), e.g. `keyhole-tfstate-dev-123456789012`."
  type        = string
}

variable "lock_table_name" {
  description = "Name of the DynamoDB lock table."
  type        = string
  default     = "keyhole-tfstate-lock"
}

variable "kms_alias" {
  description = "Alias (without `alias/`) of the KMS key encrypting state, e.g. `keyhole-tfstate`; backend configs refer to it."
  type        = string
  default     = "keyhole-tfstate"
}

variable "noncurrent_version_expiration_days" {
  description = "Days earlier state versions are kept (rollback window for the state itself)."
  type        = number
  default     = 90
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete a bucket that still holds state."
  type        = bool
  default     = false
}
