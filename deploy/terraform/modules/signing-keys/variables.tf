variable "name" {
  description = "Name prefix for the public keys and the key group, e.g. `keyhole-dev`."
  type        = string
}

variable "algorithm" {
  description = "Key algorithm: RSA (2048 bits, CloudFront's default, SHA-1 or SHA-256 signatures) or ECDSA (P-256)."
  type        = string
  default     = "RSA"

  validation {
    condition     = contains(["RSA", "ECDSA"], var.algorithm)
    error_message = "algorithm must be RSA or ECDSA."
  }
}

variable "key_slots" {
  description = "Generated keys, by slot name. One slot normally; two during a rotation (the key group trusts every slot)."
  type        = set(string)
  default     = ["a"]

  validation {
    condition     = length(var.key_slots) >= 1 && length(var.key_slots) <= 2
    error_message = "Keep one key slot, or two while rotating."
  }
}

variable "active_slot" {
  description = "The slot whose private key signs new links; must be one of key_slots."
  type        = string
  default     = "a"
}

variable "additional_public_keys" {
  description = "Extra public keys (PEM, SubjectPublicKeyInfo) the key group trusts, by name, e.g. a key made with `keyhole keys generate` for a self-hosted edge being migrated."
  type        = map(string)
  default     = {}
}
