# Remote state of the test environment (bucket and key made by stacks/state-backend).
# terraform -chdir=deploy/terraform/stacks/signed-urls init -backend-config=envs/test.backend.hcl

bucket         = "keyhole-tfstate-test-333333333333"
key            = "signed-urls/test.tfstate"
region         = "eu-west-1"
encrypt        = true
kms_key_id     = "arn:aws:kms:eu-west-1:333333333333:alias/keyhole-tfstate"
dynamodb_table = "keyhole-tfstate-lock"
use_lockfile   = true
