# State backend of the infra-test account.
# terraform -chdir=deploy/terraform/stacks/state-backend apply -var-file=envs/infra-test.tfvars -state=infra-test.tfstate

environment         = "infra-test"
allowed_account_ids = ["111111111111"]
owner               = "platform-team"
cost_center         = "CC-4711"
