variable "model_name" {
  description = "Model name: its bucket, ECR repository, Lambda function and state machine name."
  type        = string
}

variable "aws_region" {
  description = "AWS region the model is deployed to."
  type        = string
}

variable "create_lambda" {
  description = "Create the Lambda function; `invoke infra` sets it false until the first image is pushed."
  type        = bool
  default     = true
}

variable "image_tag" {
  description = "Image tag the Lambda function is created with; `invoke infra` passes the latest pushed tag."
  type        = string
  default     = ""
}

variable "lambda_memory_size" {
  description = "Lambda memory in MB (128-10240)."
  type        = number
}

variable "lambda_timeout" {
  description = "Time limit of one notebook step in seconds (1-900)."
  type        = number
}

variable "lambda_storage_size" {
  description = "Lambda /tmp storage in MB (512-10240)."
  type        = number
}

variable "lambda_architecture" {
  description = "CPU architecture of the Lambda function and its image (x86_64 or arm64)."
  type        = string
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the function's and the pipeline's logs."
  type        = number
  default     = 365
}

variable "cors_allowed_origins" {
  description = "Origins (the front end's URL) allowed to use the bucket from a browser."
  type        = list(string)
}

variable "ecr_keep_images" {
  description = "Number of most recent images kept in the ECR repository."
  type        = number
  default     = 10
}

variable "auth_function_name" {
  description = "Shared authorization Lambda function the pipeline invokes first (empty: none)."
  type        = string
  default     = ""
}

variable "cognito_identity_pool_id" {
  description = "Cognito identity pool whose users get the model's user role (empty: none)."
  type        = string
  default     = ""
}

variable "config_bucket_name" {
  description = "Shared config bucket of the front end that the user role may read (empty: none)."
  type        = string
  default     = ""
}
