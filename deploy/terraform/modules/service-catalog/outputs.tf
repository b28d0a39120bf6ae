output "portfolio_id" {
  description = "Id of the portfolio."
  value       = aws_servicecatalog_portfolio.this.id
}

output "product_ids" {
  description = "Product ids by name."
  value       = { for name, product in aws_servicecatalog_product.this : name => product.id }
}
