terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80, < 6.0"
    }
  }

  # Partial configuration: `terraform init -backend-config=envs/shared.backend.hcl`.
  backend "s3" {}
}
