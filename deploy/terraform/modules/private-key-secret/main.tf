# The signing key in Secrets Manager, encrypted with a customer-managed KMS key. The secret string
# is the PEM itself, exactly as tls_private_key wrote it; the Lambda reads it through
# KEYHOLE_KEY=secretsmanager://ARN.

resource "aws_secretsmanager_secret" "this" {
  #checkov:skip=CKV2_AWS_57:Rotation is driven by Terraform (signing-keys key_slots/active_slot) because a new key must first be published in the CloudFront key group; a Secrets Manager rotation Lambda would swap the key before CloudFront trusts it and break every link.
  name                    = var.name
  description             = "Keyhole signing key for CloudFront key pair ${var.key_pair_id}"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.recovery_window_in_days
}

resource "aws_secretsmanager_secret_version" "this" {
  secret_id     = aws_secretsmanager_secret.this.id
  secret_string = var.private_key_pem
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
