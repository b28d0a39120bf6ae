# Remote state of the prod environment (bucket and key made by stacks/state-backend).
# terraform -chdir=deploy/terraform/stacks/signed-urls init -backend-config=envs/prod.backend.hcl

bucket         = "keyhole-tfstate-prod-444444444444"
key            = "signed-urls/prod.tfstate"
region         = "eu-west-1"
encrypt        = true
kms_key_id     = "arn:aws:kms:eu-west-1:444444444444:alias/keyhole-tfstate"
dynamodb_table = "keyhole-tfstate-lock"
use_lockfile   = true
