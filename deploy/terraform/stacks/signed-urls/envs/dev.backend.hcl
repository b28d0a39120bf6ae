# Remote state of the dev environment (bucket and key made by stacks/state-backend).
# terraform -chdir=deploy/terraform/stacks/signed-urls init -backend-config=envs/dev.backend.hcl

bucket         = "keyhole-tfstate-dev-222222222222"
key            = "signed-urls/dev.tfstate"
region         = "eu-west-1"
encrypt        = true
kms_key_id     = "arn:aws:kms:eu-west-1:222222222222:alias/keyhole-tfstate"
dynamodb_table = "keyhole-tfstate-lock"
use_lockfile   = true
