# File records (design §5): one item per file, keyed by file_id, expired by DynamoDB TTL on `ttl`
# (epoch seconds). DynamoDB deletes expired items lazily, often days late, so Keyhole's scheduled
# sweep deletes object and record together on time; TTL is the backstop.
#
# owner-index lists a principal's files newest first (GET /api/files).

resource "aws_dynamodb_table" "this" {
  name                        = var.table_name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "file_id"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "file_id"
    type = "S"
  }

  attribute {
    name = "owner"
    type = "S"
  }

  attribute {
    name = "upload_url_generated_at"
    type = "N"
  }

  global_secondary_index {
    name            = "owner-index"
    hash_key        = "owner"
    range_key       = "upload_url_generated_at"
    projection_type = "ALL"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  point_in_time_recovery {
    enabled = var.point_in_time_recovery
  }
}
