# Every resource gets the four cost-allocation tags through default_tags, in both regions.
# Modules declare no provider of their own, so nothing escapes these defaults.

locals {
  default_tags = merge(var.extra_tags, {
    Environment = var.environment
    Project     = var.project
    Owner       = var.owner
    CostCenter  = var.cost_center
  })
}

provider "aws" {
  region              = var.region
  allowed_account_ids = var.allowed_account_ids

  default_tags {
    tags = local.default_tags
  }
}

# CloudFront's certificate, web ACL, metrics and alarms live in us-east-1.
provider "aws" {
  alias               = "us_east_1"
  region              = "us-east-1"
  allowed_account_ids = var.allowed_account_ids

  default_tags {
    tags = local.default_tags
  }
}
