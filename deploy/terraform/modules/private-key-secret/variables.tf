variable "name" {
  description = "Secret name, e.g. `keyhole/dev/signing-key`."
  type        = string
}

variable "private_key_pem" {
  description = "The signing private key PEM stored as the secret string (PKCS#1 or SEC1, as tls_private_key writes it)."
  type        = string
  sensitive   = true
}

variable "key_pair_id" {
  description = "CloudFront public key id paired with the private key; recorded as the secret's description."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key that encrypts the secret."
  type        = string
}

variable "recovery_window_in_days" {
  description = "Days a deleted secret can still be restored (7-30)."
  type        = number
  default     = 30

  validation {
    condition     = var.recovery_window_in_days >= 7 && var.recovery_window_in_days <= 30
    error_message = "Secrets Manager accepts a recovery window of 7 to 30 days."
  }
}
