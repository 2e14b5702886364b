output "bucket_name" {
  description = "Name of the model's S3 bucket."
  value       = module.model.bucket_name
}

output "ecr_repository_url" {
  description = "URL of the model's ECR repository."
  value       = module.model.ecr_repository_url
}

output "lambda_function_name" {
  description = "Name of the model's Lambda function (null until the first image is pushed)."
  value       = module.model.lambda_function_name
}

output "state_machine_arn" {
  description = "ARN of the model's state machine."
  value       = module.model.state_machine_arn
}

output "user_role_arn" {
  description = "ARN of the front end users' role (null without an identity pool)."
  value       = module.model.user_role_arn
}

output "ci_deploy_role_arn" {
  description = "Role the repository's CI assumes: its QUETZAL_DEPLOY_ROLE_ARN variable (null without ci_repository)."
  value       = module.model.ci_deploy_role_arn
}
