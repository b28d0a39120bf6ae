output "table_name" {
  description = "Name of the table (KEYHOLE_METADATA=dynamodb://NAME)."
  value       = aws_dynamodb_table.this.name
}

output "table_arn" {
  description = "ARN of the table."
  value       = aws_dynamodb_table.this.arn
}

output "owner_index_name" {
  description = "Name of the owner GSI."
  value       = "owner-index"
}

output "expiry_index_name" {
  description = "Name of the GSI the sweep reads expired records from."
  value       = "expiry-index"
}
