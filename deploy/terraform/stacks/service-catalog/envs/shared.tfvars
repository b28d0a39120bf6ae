# Service Catalog portfolio in the shared-services account.
# terraform -chdir=deploy/terraform/stacks/service-catalog plan -var-file=envs/shared.tfvars

environment         = "shared"
allowed_account_ids = ["555555555555"]
owner               = "platform-team"
cost_center         = "CC-4711"

principal_arns    = ["arn:aws:iam::555555555555:role/team-developers"]
launch_role_arn   = "arn:aws:iam::555555555555:role/keyhole-catalog-launch"
artifact_base_url = "https://keyhole-catalog-artifacts-555555555555.s3.eu-west-1.amazonaws.com/products"
product_version   = "v1.0.0"
support_email     = "platform-team@example.com"
