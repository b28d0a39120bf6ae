# Keyhole signed URLs: prod. Production: the only environment with point-in-time recovery and all edge locations.
# terraform -chdir=deploy/terraform/stacks/signed-urls plan -var-file=envs/prod.tfvars

environment         = "prod"
allowed_account_ids = ["444444444444"]
owner               = "platform-team"
cost_center         = "CC-4711"

dns_zone_name = "example.com"
files_domain  = "files.example.com"
api_domain    = "files-api.example.com"
# DNS hosted outside Route 53: dns_zone_name = null, certificates you validated at your DNS
# provider, and the records created there from the files_dns_target and api_dns_target outputs.
# acm_certificate_arn = "arn:aws:acm:us-east-1:444444444444:certificate/00000000-0000-0000-0000-000000000000" # files_domain, us-east-1
# api_certificate_arn = "arn:aws:acm:eu-west-1:444444444444:certificate/00000000-0000-0000-0000-000000000000" # api_domain, the stack's region

lambda_memory_mb       = 1024
point_in_time_recovery = true
price_class            = "PriceClass_All"

alarm_email        = "keyhole-alerts+prod@example.com"
monthly_budget_usd = 1000

lambda_reserved_concurrency = 500
log_retention_days          = 365
cors_allowed_origins        = ["https://app.example.com"]
