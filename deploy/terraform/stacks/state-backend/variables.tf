variable "environment" {
  description = "Environment whose state this account keeps."
  type        = string

  validation {
    condition     = contains(["infra-test", "dev", "test", "prod", "shared"], var.environment)
    error_message = "environment must be infra-test, dev, test, prod or shared."
  }
}

variable "allowed_account_ids" {
  description = "The account this backend is created in."
  type        = list(string)
}

variable "owner" {
  description = "Owner tag."
  type        = string
}

variable "cost_center" {
  description = "CostCenter tag."
  type        = string
}

variable "project" {
  description = "Project tag and name prefix."
  type        = string
  default     = "keyhole"
}

variable "region" {
  description = "Region of the state bucket and lock table."
  type        = string
  default     = "eu-west-1"
}

variable "extra_tags" {
  description = "More default tags."
  type        = map(string)
  default     = {}
}
