terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80, < 6.0"
    }
  }

  # Bootstrap: the first apply keeps its state locally (it creates the bucket the other stacks
  # use). Afterwards the state may be migrated into that bucket: see docs/deployment.md.
}
