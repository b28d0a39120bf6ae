# Keyhole signed URLs: dev. Developers' shared environment; the first to receive a new Lambda build.
# terraform -chdir=deploy/terraform/stacks/signed-urls plan -var-file=envs/dev.tfvars

environment         = "dev"
allowed_account_ids = ["222222222222"]
owner               = "platform-team"
cost_center         = "CC-4711"

dns_zone_name = "dev.example.com"
files_domain  = "files.dev.example.com"
api_domain    = "files-api.dev.example.com"
# DNS hosted outside Route 53: dns_zone_name = null, certificates you validated at your DNS
# provider, and the records created there from the files_dns_target and api_dns_target outputs.
# acm_certificate_arn = "arn:aws:acm:us-east-1:222222222222:certificate/00000000-0000-0000-0000-000000000000" # files_domain, us-east-1
# api_certificate_arn = "arn:aws:acm:eu-west-1:222222222222:certificate/00000000-0000-0000-0000-000000000000" # api_domain, the stack's region

lambda_memory_mb       = 512
point_in_time_recovery = false
price_class            = "PriceClass_100"

alarm_email        = "keyhole-alerts+dev@example.com"
monthly_budget_usd = 100

lambda_reserved_concurrency = 50
log_retention_days          = 90
cors_allowed_origins        = ["https://app.dev.example.com"]
