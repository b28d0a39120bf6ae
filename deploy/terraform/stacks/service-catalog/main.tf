# The self-service catalog: the whole signed-URL stack and the modules that stand on their own
# (those needing only the default provider), each a product of one portfolio.

locals {
  products = {
    "keyhole-signed-urls"        = "The complete stack: one domain (CloudFront + key group), private bucket, API, records, events, alarms."
    "keyhole-signing-keys"       = "CloudFront public keys and key group from Terraform-generated RSA or ECDSA keys."
    "keyhole-private-key-secret" = "A KMS-encrypted Secrets Manager secret holding a signing key."
    "keyhole-metadata-table"     = "DynamoDB file-record table with TTL, encryption and the owner index."
    "keyhole-integration-role"   = "Least-privilege IAM for the Keyhole Lambda and for applications that sign links."
    "keyhole-state-backend"      = "Versioned, encrypted Terraform state bucket and lock table."
  }
}

module "catalog" {
  source = "../../modules/service-catalog"

  portfolio_name  = "Keyhole signed URLs"
  provider_name   = var.owner
  principal_arns  = var.principal_arns
  launch_role_arn = var.launch_role_arn

  products = {
    for name, description in local.products : name => {
      description   = description
      owner         = var.owner
      support_email = var.support_email
      version       = var.product_version
      template_url  = "${var.artifact_base_url}/${name}-${var.product_version}.tar.gz"
    }
  }
}
