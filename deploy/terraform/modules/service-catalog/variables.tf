variable "portfolio_name" {
  description = "Name of the portfolio teams browse, e.g. `Keyhole signed URLs`."
  type        = string
}

variable "description" {
  description = "What the portfolio offers."
  type        = string
  default     = "One domain for file uploads and downloads through CloudFront signed URLs (Keyhole), and its building blocks."
}

variable "provider_name" {
  description = "Team that owns and supports the products."
  type        = string
}

variable "products" {
  description = "Products by name: a Terraform configuration packaged as .tar.gz (deploy/scripts/package-products.sh) and uploaded to S3, with its version."
  type = map(object({
    description   = string
    owner         = string
    support_email = string
    version       = string
    template_url  = string
  }))

  validation {
    condition     = alltrue([for product in values(var.products) : startswith(product.template_url, "https://")])
    error_message = "template_url must be the https:// URL of the uploaded .tar.gz."
  }
}

variable "principal_arns" {
  description = "IAM roles (or groups, users) of the teams allowed to launch the products."
  type        = list(string)
}

variable "launch_role_arn" {
  description = "Role Service Catalog's Terraform engine assumes to provision (it needs the permissions the products' resources need; teams need none of them)."
  type        = string
}
