# Remote state of the infra-test environment (bucket and key made by stacks/state-backend).
# terraform -chdir=deploy/terraform/stacks/signed-urls init -backend-config=envs/infra-test.backend.hcl

bucket         = "keyhole-tfstate-infra-test-111111111111"
key            = "signed-urls/infra-test.tfstate"
region         = "eu-west-1"
encrypt        = true
kms_key_id     = "arn:aws:kms:eu-west-1:111111111111:alias/keyhole-tfstate"
dynamodb_table = "keyhole-tfstate-lock"
use_lockfile   = true
