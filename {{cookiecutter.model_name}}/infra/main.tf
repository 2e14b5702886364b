# This model's AWS stack. The module is vendored in modules/quetzal-model by the template;
# `invoke infra` runs terraform here with {{ cookiecutter.model_name }}.tfvars.
module "model" {
  source = "./modules/quetzal-model"

  name                     = var.model_name
  lambda_memory_size       = var.lambda_memory_size
  lambda_timeout           = var.lambda_timeout
  lambda_storage_size      = var.lambda_storage_size
  cors_allowed_origins     = var.cors_allowed_origins
  auth_function_name       = var.auth_function_name
  cognito_identity_pool_id = var.cognito_identity_pool_id
}
