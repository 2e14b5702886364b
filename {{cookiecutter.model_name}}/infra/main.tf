# This model's AWS stack, from the module vendored in modules/quetzal-model.
# `invoke infra` (or `invoke deploy` the first time) runs terraform here with
# {{ cookiecutter.model_name }}.tfvars and .env's values as -var (model name, region, sizes...);
# see terraform's README in that folder for the inputs. resource_names, admin_role_name and
# user_role_managed_policies are set in the .tfvars of a model adopted from the backend's Terraform.
module "model" {
  source = "./modules/quetzal-model"

  name                     = var.model_name
  create_lambda            = var.create_lambda
  image_tag                = var.image_tag
  lambda_memory_size       = var.lambda_memory_size
  lambda_timeout           = var.lambda_timeout
  lambda_storage_size      = var.lambda_storage_size
  lambda_architecture      = var.lambda_architecture
  log_retention_days       = var.log_retention_days
  cors_allowed_origins     = var.cors_allowed_origins
  ecr_keep_images          = var.ecr_keep_images
  auth_function_name       = var.auth_function_name
  cognito_identity_pool_id = var.cognito_identity_pool_id
  config_bucket_name       = var.config_bucket_name
  existing_bucket_name     = var.existing_bucket_name
  tags                     = { model = var.model_name }

  resource_names             = var.resource_names
  admin_role_name            = var.admin_role_name
  user_role_managed_policies = var.user_role_managed_policies

  create_fargate             = var.create_fargate
  fargate_cluster_name       = var.fargate_cluster_name
  fargate_cpu                = var.fargate_cpu
  fargate_memory             = var.fargate_memory
  fargate_ephemeral_storage  = var.fargate_ephemeral_storage
  fargate_subnet_ids         = var.fargate_subnet_ids
  fargate_security_group_ids = var.fargate_security_group_ids

  ci_provider          = var.ci_provider
  ci_repository        = var.ci_repository
  ci_deploy_ref        = var.ci_deploy_ref
  ci_oidc_provider_arn = var.ci_oidc_provider_arn
}
