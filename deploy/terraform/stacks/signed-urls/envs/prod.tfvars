# Keyhole signed URLs: prod. Production: the only environment with point-in-time recovery and all edge locations.
# terraform -chdir=deploy/terraform/stacks/signed-urls plan -var-file=envs/prod.tfvars

environment         = "prod"
allowed_account_ids = ["444444444444"]
owner               = "platform-team"
cost_center         = "CC-4711"

dns_zone_name = "example.com"
files_domain  = "files.example.com"
api_domain    = "files-api.example.com"

lambda_memory_mb       = 1024
point_in_time_recovery = true
price_class            = "PriceClass_All"

alarm_email        = "keyhole-alerts+prod@example.com"
monthly_budget_usd = 1000

lambda_reserved_concurrency = 500
log_retention_days          = 365
cors_allowed_origins        = ["https://app.example.com"]
