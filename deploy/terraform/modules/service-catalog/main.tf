# Self-service: a Service Catalog portfolio whose products are Keyhole's Terraform
# configurations (type EXTERNAL, run by the Terraform reference engine for Service Catalog).
# Teams launch them from the console or API without holding the underlying permissions: the
# launch constraint's role provisions on their behalf.

resource "aws_servicecatalog_portfolio" "this" {
  name          = var.portfolio_name
  description   = var.description
  provider_name = var.provider_name
}

resource "aws_servicecatalog_product" "this" {
  for_each = var.products

  name                = each.key
  description         = each.value.description
  owner               = each.value.owner
  distributor         = var.provider_name
  support_email       = each.value.support_email
  support_description = "Keyhole deployment guide: docs/deployment.md"
  type                = "EXTERNAL"

  provisioning_artifact_parameters {
    name                        = each.value.version
    description                 = "${each.key} ${each.value.version}"
    template_url                = each.value.template_url
    type                        = "EXTERNAL"
    disable_template_validation = false
  }
}

resource "aws_servicecatalog_product_portfolio_association" "this" {
  for_each = var.products

  portfolio_id = aws_servicecatalog_portfolio.this.id
  product_id   = aws_servicecatalog_product.this[each.key].id
}

resource "aws_servicecatalog_constraint" "launch" {
  for_each = var.products

  description  = "Provision ${each.key} with the catalog's launch role"
  portfolio_id = aws_servicecatalog_portfolio.this.id
  product_id   = aws_servicecatalog_product.this[each.key].id
  type         = "LAUNCH"

  parameters = jsonencode({
    RoleArn = var.launch_role_arn
  })

  depends_on = [aws_servicecatalog_product_portfolio_association.this]
}

resource "aws_servicecatalog_principal_portfolio_association" "this" {
  for_each = toset(var.principal_arns)

  portfolio_id   = aws_servicecatalog_portfolio.this.id
  principal_arn  = each.value
  principal_type = "IAM"
}
