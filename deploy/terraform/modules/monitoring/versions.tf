terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80, < 6.0"
      # CloudFront publishes its metrics in us-east-1; alarms on them, and the topic they
      # notify, must live there too.
      configuration_aliases = [aws.us_east_1]
    }
  }
}
