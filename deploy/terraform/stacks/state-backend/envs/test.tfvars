# State backend of the test account.
# terraform -chdir=deploy/terraform/stacks/state-backend apply -var-file=envs/test.tfvars -state=test.tfstate

environment         = "test"
allowed_account_ids = ["333333333333"]
owner               = "platform-team"
cost_center         = "CC-4711"
