output "key_group_id" {
  description = "Id of the CloudFront key group (for trusted_key_groups)."
  value       = aws_cloudfront_key_group.this.id
}

output "active_key_pair_id" {
  description = "CloudFront public key id of the active slot: the Key-Pair-Id that links carry (stored with the key in the secret)."
  value       = aws_cloudfront_public_key.generated[var.active_slot].id
}

output "active_private_key_pem" {
  description = "Private key PEM of the active slot (PKCS#1 for RSA, SEC1 for ECDSA)."
  value       = tls_private_key.this[var.active_slot].private_key_pem
  sensitive   = true
}

output "public_key_pems" {
  description = "Public key PEMs by CloudFront public key id, generated and additional, for `keyhole verify --key ID=PEM` or a self-hosted edge's trusted keys."
  value = merge(
    { for slot, key in aws_cloudfront_public_key.generated : key.id => tls_private_key.this[slot].public_key_pem },
    { for name, key in aws_cloudfront_public_key.additional : key.id => var.additional_public_keys[name] },
  )
}

output "algorithm" {
  description = "Algorithm of the generated keys."
  value       = var.algorithm
}
