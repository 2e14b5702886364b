output "bucket_name" {
  description = "Name of the model's S3 bucket."
  value       = local.bucket_name
}

output "bucket_arn" {
  description = "ARN of the model's S3 bucket."
  value       = local.bucket_arn
}

output "ecr_repository_name" {
  description = "Name of the model's ECR repository."
  value       = aws_ecr_repository.this.name
}

output "ecr_repository_url" {
  description = "URL of the model's ECR repository, to tag and push images to."
  value       = aws_ecr_repository.this.repository_url
}

output "lambda_function_name" {
  description = "Name of the model's Lambda function (null until it is created)."
  value       = try(aws_lambda_function.this[0].function_name, null)
}

output "lambda_function_arn" {
  description = "ARN of the model's Lambda function (null until it is created)."
  value       = try(aws_lambda_function.this[0].arn, null)
}

output "lambda_role_arn" {
  description = "ARN of the Lambda function's execution role."
  value       = aws_iam_role.lambda.arn
}

output "lambda_log_group_name" {
  description = "CloudWatch log group of the Lambda function."
  value       = aws_cloudwatch_log_group.lambda.name
}

output "state_machine_name" {
  description = "Name of the model's Step Functions state machine."
  value       = aws_sfn_state_machine.this.name
}

output "state_machine_arn" {
  description = "ARN of the model's Step Functions state machine."
  value       = aws_sfn_state_machine.this.arn
}

output "state_machine_role_arn" {
  description = "ARN of the role the state machine runs with."
  value       = aws_iam_role.states.arn
}

output "user_role_arn" {
  description = "ARN of the role for the front end's Cognito users (null without an identity pool)."
  value       = try(aws_iam_role.user[0].arn, null)
}
