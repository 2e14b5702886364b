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

variable "existing_bucket_name" {
  description = "An existing bucket the model uses instead of its own (`invoke infra` sets it from .env's EXISTING_BUCKET_NAME)."
  type        = string
  default     = ""
}

# Fargate steps: `invoke infra` sets these from .env's FARGATE_* keys when FARGATE_SUBNETS is set.
variable "create_fargate" {
  description = "Create what Fargate steps need (cluster unless fargate_cluster_name, task definition, roles, logs)."
  type        = bool
  default     = false
}

variable "fargate_cluster_name" {
  description = "Existing ECS cluster for Fargate steps (empty: the module creates <model>-steps)."
  type        = string
  default     = ""
}

variable "fargate_cpu" {
  description = "CPU units of a Fargate step (1024 = 1 vCPU)."
  type        = number
  default     = 2048
}

variable "fargate_memory" {
  description = "Memory of a Fargate step in MB."
  type        = number
  default     = 16384
}

variable "fargate_ephemeral_storage" {
  description = "Ephemeral storage of a Fargate step in GiB (21-200)."
  type        = number
  default     = 21
}

variable "fargate_subnet_ids" {
  description = "Existing subnets Fargate steps run in."
  type        = list(string)
  default     = []
}

variable "fargate_security_group_ids" {
  description = "Existing security groups of Fargate steps."
  type        = list(string)
  default     = []
}

# A stack adopted from the backend's Terraform keeps its production names (set in the .tfvars).
variable "resource_names" {
  description = "IAM role and policy names when they differ from the module's defaults (an adopted stack)."
  type        = any
  default     = {}
}

variable "admin_role_name" {
  description = "Existing admins' role that gets an inline policy on the model's bucket (empty: none)."
  type        = string
  default     = ""
}

variable "user_role_managed_policies" {
  description = "Existing managed policies attached to the user role."
  type        = list(string)
  default     = []
}

variable "ci_provider" {
  description = "Where the model's CI runs (the bake's ci_provider answer): github or gitlab."
  type        = string
  default     = "{{ cookiecutter.ci_provider }}"
}

variable "ci_repository" {
  description = "Repository whose CI deploys this model: GitHub owner/name (.github/workflows/ci.yml) or GitLab project path (.gitlab-ci.yml); empty: no deploy role. `invoke ci-bootstrap` says how to set it."
  type        = string
  default     = ""
}

variable "ci_deploy_ref" {
  description = "Git ref the CI deploy role trusts (the workflow's deploy trigger)."
  type        = string
  default     = "{% if cookiecutter.ci_deploy_on == "main" %}refs/heads/main{% else %}refs/tags/v*{% endif %}"
}

variable "ci_oidc_provider_arn" {
  description = "The account's existing GitHub or GitLab OIDC provider, when another model created it; empty: created with the role."
  type        = string
  default     = ""
}
