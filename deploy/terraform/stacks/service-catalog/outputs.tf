output "portfolio_id" {
  description = "Id of the portfolio."
  value       = module.catalog.portfolio_id
}

output "product_ids" {
  description = "Product ids by name."
  value       = module.catalog.product_ids
}
