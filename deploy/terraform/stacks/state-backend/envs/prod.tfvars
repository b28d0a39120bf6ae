# State backend of the prod account.
# terraform -chdir=deploy/terraform/stacks/state-backend apply -var-file=envs/prod.tfvars -state=prod.tfstate

environment         = "prod"
allowed_account_ids = ["444444444444"]
owner               = "platform-team"
cost_center         = "CC-4711"
