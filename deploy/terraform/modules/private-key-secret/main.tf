# The signing key in Secrets Manager, encrypted with a customer-managed KMS key. The secret string
# is {"private_key": PEM as tls_private_key wrote it, "key_pair_id": its CloudFront public key id}:
# key and id change together in one secret version, so a Lambda version from before a rotation
# (a rollback, or one still running while the alias moves) can never sign the new key under the
# old id. The Lambda reads it through KEYHOLE_KEY=secretsmanager://ARN.

resource "aws_secretsmanager_secret" "this" {
  #checkov:skip=CKV2_AWS_57:Rotation is driven by Terraform (signing-keys key_slots/active_slot) because a new key must first be published in the CloudFront key group; a Secrets Manager rotation Lambda would swap the key before CloudFront trusts it and break every link.
  name                    = var.name
  description             = "Keyhole signing key for CloudFront key pair ${var.key_pair_id}"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_in_days
}

resource "aws_secretsmanager_secret_version" "this" {
  secret_id = aws_secretsmanager_secret.this.id
  secret_string = jsonencode({
    private_key = var.private_key_pem
    key_pair_id = var.key_pair_id
  })
}

data "aws_iam_policy_document" "secret" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["secretsmanager:*"]
    resources = ["*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_secretsmanager_secret_policy" "this" {
  secret_arn          = aws_secretsmanager_secret.this.arn
  policy              = data.aws_iam_policy_document.secret.json
  block_public_policy = true
}
