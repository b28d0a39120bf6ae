# State backend of the shared account.
# terraform -chdir=deploy/terraform/stacks/state-backend apply -var-file=envs/shared.tfvars -state=shared.tfstate

environment         = "shared"
allowed_account_ids = ["555555555555"]
owner               = "platform-team"
cost_center         = "CC-4711"
