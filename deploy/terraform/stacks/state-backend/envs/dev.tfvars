# State backend of the dev account.
# terraform -chdir=deploy/terraform/stacks/state-backend apply -var-file=envs/dev.tfvars -state=dev.tfstate

environment         = "dev"
allowed_account_ids = ["222222222222"]
owner               = "platform-team"
cost_center         = "CC-4711"
