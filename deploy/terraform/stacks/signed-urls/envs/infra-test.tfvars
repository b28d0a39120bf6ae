# Keyhole signed URLs: infra-test. Where Terraform and module changes are tried first; may be torn down and rebuilt at any time.
# terraform -chdir=deploy/terraform/stacks/signed-urls plan -var-file=envs/infra-test.tfvars

environment         = "infra-test"
allowed_account_ids = ["111111111111"]
owner               = "platform-team"
cost_center         = "CC-4711"

dns_zone_name = "infra-test.example.com"
files_domain  = "files.infra-test.example.com"
api_domain    = "files-api.infra-test.example.com"
# DNS hosted outside Route 53: dns_zone_name = null, certificates you validated at your DNS
# provider, and the records created there from the files_dns_target and api_dns_target outputs.
# acm_certificate_arn = "arn:aws:acm:us-east-1:111111111111:certificate/00000000-0000-0000-0000-000000000000" # files_domain, us-east-1
# api_certificate_arn = "arn:aws:acm:eu-west-1:111111111111:certificate/00000000-0000-0000-0000-000000000000" # api_domain, the stack's region

lambda_memory_mb       = 256
point_in_time_recovery = false
price_class            = "PriceClass_100"

alarm_email        = "keyhole-alerts+infra-test@example.com"
monthly_budget_usd = 50

lambda_reserved_concurrency = 20
log_retention_days          = 30
cors_allowed_origins        = ["https://app.infra-test.example.com"]
