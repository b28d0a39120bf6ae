# Keyhole signed URLs: test. Pre-production: same shape as prod at smaller scale; release candidates are verified here.
# terraform -chdir=deploy/terraform/stacks/signed-urls plan -var-file=envs/test.tfvars

environment         = "test"
allowed_account_ids = ["333333333333"]
owner               = "platform-team"
cost_center         = "CC-4711"

dns_zone_name = "test.example.com"
files_domain  = "files.test.example.com"
api_domain    = "files-api.test.example.com"

lambda_memory_mb       = 512
point_in_time_recovery = false
price_class            = "PriceClass_100"

alarm_email        = "keyhole-alerts+test@example.com"
monthly_budget_usd = 200

lambda_reserved_concurrency = 100
log_retention_days          = 90
cors_allowed_origins        = ["https://app.test.example.com"]
