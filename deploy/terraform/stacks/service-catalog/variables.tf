variable "environment" {
  description = "Environment tag of the catalog (the shared-services account)."
  type        = string
}

variable "allowed_account_ids" {
  description = "The account holding the catalog."
  type        = list(string)
}

variable "owner" {
  description = "Owner tag, and the catalog's provider name."
  type        = string
}

variable "cost_center" {
  description = "CostCenter tag."
  type        = string
}

variable "principal_arns" {
  description = "Roles of the teams allowed to launch the products."
  type        = list(string)
}

variable "launch_role_arn" {
  description = "Role the Terraform engine of Service Catalog provisions with."
  type        = string
}

variable "artifact_base_url" {
  description = "https:// URL of the S3 folder holding the packaged products (deploy/scripts/package-products.sh), without a trailing slash."
  type        = string
}

variable "product_version" {
  description = "Version of the packages to offer, e.g. v1.0.0 (file NAME-VERSION.tar.gz)."
  type        = string
}

variable "support_email" {
  description = "Where teams ask for help."
  type        = string
}

variable "project" {
  description = "Project tag."
  type        = string
  default     = "keyhole"
}

variable "region" {
  description = "Region of the catalog."
  type        = string
  default     = "eu-west-1"
}

variable "extra_tags" {
  description = "More default tags."
  type        = map(string)
  default     = {}
}
