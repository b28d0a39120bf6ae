# File records (design §5): one item per file, keyed by file_id, expired by DynamoDB TTL on `ttl`
# (epoch seconds). DynamoDB deletes expired items lazily, often days late, so Keyhole's scheduled
# sweep deletes object and record together on time; TTL is the backstop.
#
# owner-index lists a principal's files newest first (GET /api/files). expiry-index finds what has
# expired for the sweep: hash `expiry_shard` (0-15, from the file id, set on every file item),
# range `ttl`, so a sweep queries sixteen shards for `ttl <= now` instead of scanning the table.

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

  attribute {
    name = "expiry_shard"
    type = "N"
  }

  attribute {
    name = "ttl"
    type = "N"
  }

  global_secondary_index {
    name            = "owner-index"
    hash_key        = "owner"
    range_key       = "upload_url_generated_at"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "expiry-index"
    hash_key        = "expiry_shard"
    range_key       = "ttl"
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
