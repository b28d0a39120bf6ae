# Remote state of the service catalog (shared-services account).
# terraform -chdir=deploy/terraform/stacks/service-catalog init -backend-config=envs/shared.backend.hcl

bucket         = "keyhole-tfstate-shared-555555555555"
key            = "service-catalog/shared.tfstate"
region         = "eu-west-1"
encrypt        = true
kms_key_id     = "arn:aws:kms:eu-west-1:555555555555:alias/keyhole-tfstate"
dynamodb_table = "keyhole-tfstate-lock"
use_lockfile   = true
