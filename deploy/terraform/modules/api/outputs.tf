output "function_name" {
  description = "Name of the Lambda function."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "Unqualified ARN of the Lambda function."
  value       = aws_lambda_function.this.arn
}

output "alias_arn" {
  description = "ARN of the `live` alias: what the API, the event queue and the schedule invoke."
  value       = aws_lambda_alias.live.arn
}

output "published_version" {
  description = "Version this apply published (the `live` alias serves it unless alias_version pins another)."
  value       = aws_lambda_function.this.version
}

output "api_id" {
  description = "HTTP API id (CloudWatch dimension ApiId)."
  value       = aws_apigatewayv2_api.this.id
}

output "stage_name" {
  description = "Stage name (CloudWatch dimension Stage)."
  value       = aws_apigatewayv2_stage.default.name
}

output "api_url" {
  description = "Base URL of the API: the custom domain when set, the execute-api endpoint otherwise."
  value       = var.domain_name != null ? "https://${var.domain_name}" : aws_apigatewayv2_api.this.api_endpoint
}

output "log_group_names" {
  description = "Log groups of the function and the API access logs."
  value       = [aws_cloudwatch_log_group.function.name, aws_cloudwatch_log_group.access.name]
}

output "domain_target" {
  description = "The API Gateway domain name's target (d-xxxx.execute-api.REGION.amazonaws.com) that domain_name must point at: the alias records do in Route 53; with DNS hosted elsewhere, create a CNAME to it. null without domain_name."
  value       = one(aws_apigatewayv2_domain_name.this[*].domain_name_configuration[0].target_domain_name)
}
