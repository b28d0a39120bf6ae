# Creates the remote-state backend of one account: bucket keyhole-tfstate-ENV-ACCOUNT, lock table
# keyhole-tfstate-lock and key alias/keyhole-tfstate, the names envs/ENV.backend.hcl expect.

data "aws_caller_identity" "current" {}

module "state_backend" {
  source = "../../modules/state-backend"

  bucket_name     = "${var.project}-tfstate-${var.environment}-${data.aws_caller_identity.current.account_id}"
  lock_table_name = "${var.project}-tfstate-lock"
  kms_alias       = "${var.project}-tfstate"
}
