output "lambda_role_arn" {
  description = "Execution role of the Lambda; available once its policy is attached (AWS checks the DLQ permission when the function is created)."
  value       = aws_iam_role.lambda.arn

  depends_on = [aws_iam_role_policy.lambda, aws_iam_role_policy_attachment.lambda_xray]
}

output "lambda_role_name" {
  description = "Name of the Lambda execution role."
  value       = aws_iam_role.lambda.name
}

output "signer_policy_arn" {
  description = "Managed policy to attach to any role that signs links itself."
  value       = aws_iam_policy.signer.arn
}

output "signer_role_arn" {
  description = "Role for signing applications (null when signer_principal_arns is empty)."
  value       = one(aws_iam_role.signer[*].arn)
}
