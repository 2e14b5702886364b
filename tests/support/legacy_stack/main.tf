# A model stack deployed the way the backend's Terraform does it (infra/models + infra/modules of
# systragroup/quetzal-network-editor-backend), written for the tests from the facts that matter to
# an adoption: the S3 backend and its workspace per model, the resource names, which policies are
# inline and which managed, and what is shared (the admin role, the config read policy). It is
# flat (no modules) and takes the image tag as a variable instead of reading the newest one.
# Production pins the AWS provider 6.x; this runs on the 5.100 of our machines, where the region
# is data.aws_region.current.name (6.x: .region).

terraform {
  backend "s3" {
    bucket  = "quetzal-tf-state"
    key     = "terraform/remote-state/terraform.tfstate"
    region  = "ca-central-1"
    encrypt = true
  }
}

provider "aws" {
  region = var.aws_region
}

variable "aws_region" {
  type    = string
  default = "ca-central-1"
}

variable "quetzal_model_name" {
  type = string
}

variable "cognito_identity_pool_id" {
  type = string
}

variable "lambda_memory_size" {
  type    = number
  default = 0
}

variable "lambda_time_limit" {
  type    = number
  default = 300
}

variable "lambda_storage_size" {
  type    = number
  default = 4016
}

variable "image_tag" {
  type    = string
  default = ""
}

locals {
  m    = var.quetzal_model_name
  tags = { "cost:project" = "quetzal", "cost:name" = var.quetzal_model_name }
}

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

# Storage: the bucket and the front end's CORS.
resource "aws_s3_bucket" "storage" {
  bucket = local.m
  tags   = local.tags
}

resource "aws_s3_bucket_cors_configuration" "storage" {
  bucket = aws_s3_bucket.storage.id
  cors_rule {
    allowed_headers = ["*"]
    allowed_methods = ["GET", "HEAD", "PUT", "POST", "DELETE"]
    allowed_origins = ["http://localhost:8081", "https://localhost:8081", "https://systragroup.github.io"]
    expose_headers  = ["x-amz-meta-user_email", "x-amz-meta-checksum", "ETag"]
    max_age_seconds = 3000
  }
}

resource "aws_ecr_repository" "repository" {
  name                 = local.m
  image_tag_mutability = "MUTABLE"
  tags                 = local.tags
  image_scanning_configuration {
    scan_on_push = false
  }
  encryption_configuration {
    encryption_type = "AES256"
  }
}

# The function, its log group, role, inline S3 policy and managed logging policy.
data "aws_iam_policy_document" "trust" {
  for_each = toset(["lambda", "states"])
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["${each.key}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  count              = var.lambda_memory_size > 0 ? 1 : 0
  name               = "lambda-${local.m}-role"
  assume_role_policy = data.aws_iam_policy_document.trust["lambda"].json
}

resource "aws_cloudwatch_log_group" "lambda" {
  count             = var.lambda_memory_size > 0 ? 1 : 0
  name              = "/aws/lambda/${local.m}"
  retention_in_days = 14
  tags              = local.tags
}

data "aws_iam_policy_document" "logging" {
  statement {
    actions   = ["logs:CreateLogGroup"]
    resources = ["arn:aws:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:*"]
  }
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["arn:aws:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:/aws/lambda/${local.m}:*"]
  }
}

resource "aws_iam_policy" "logging" {
  count       = var.lambda_memory_size > 0 ? 1 : 0
  name        = "lambda_logging_${local.m}"
  description = "IAM policy for logging from a lambda"
  policy      = data.aws_iam_policy_document.logging.json
}

resource "aws_iam_role_policy_attachment" "logging" {
  count      = var.lambda_memory_size > 0 ? 1 : 0
  role       = aws_iam_role.lambda[0].name
  policy_arn = aws_iam_policy.logging[0].arn
}

data "aws_iam_policy_document" "lambda_s3" {
  statement {
    actions   = ["s3:ListAllMyBuckets", "s3:GetBucketLocation"]
    resources = ["*"]
  }
  statement {
    actions   = ["s3:ListBucket"]
    resources = ["arn:aws:s3:::${local.m}"]
  }
  statement {
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["arn:aws:s3:::${local.m}/*"]
  }
}

resource "aws_iam_role_policy" "lambda_s3" {
  count  = var.lambda_memory_size > 0 ? 1 : 0
  name   = "S3PutGetObject_${local.m}"
  role   = aws_iam_role.lambda[0].name
  policy = data.aws_iam_policy_document.lambda_s3.json
}

resource "aws_lambda_function" "model" {
  count         = var.lambda_memory_size > 0 ? 1 : 0
  function_name = local.m
  role          = aws_iam_role.lambda[0].arn
  package_type  = "Image"
  architectures = ["x86_64"]
  image_uri     = "${aws_ecr_repository.repository.repository_url}:${var.image_tag}"
  memory_size   = var.lambda_memory_size
  timeout       = var.lambda_time_limit
  tags          = local.tags
  ephemeral_storage {
    size = var.lambda_storage_size
  }
  environment {
    variables = { BUCKET_NAME = local.m }
  }
  lifecycle {
    ignore_changes = [image_uri]
  }
  depends_on = [aws_iam_role_policy_attachment.logging, aws_cloudwatch_log_group.lambda]
}

# The state machine and its role, allowed to invoke the function and the shared auth function.
resource "aws_iam_role" "sfn" {
  count              = var.lambda_memory_size > 0 ? 1 : 0
  name               = "sfn-${local.m}-role"
  assume_role_policy = data.aws_iam_policy_document.trust["states"].json
}

data "aws_iam_policy_document" "invoke" {
  statement {
    actions = ["lambda:InvokeFunction"]
    resources = [
      "arn:aws:lambda:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:function:${local.m}",
      "arn:aws:lambda:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:function:${local.m}:*",
      "arn:aws:lambda:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:function:quetzal-api-auth",
    ]
  }
}

resource "aws_iam_role_policy" "invoke" {
  count  = var.lambda_memory_size > 0 ? 1 : 0
  name   = "LambdaInvoke-${local.m}"
  role   = aws_iam_role.sfn[0].name
  policy = data.aws_iam_policy_document.invoke.json
}

resource "aws_sfn_state_machine" "model" {
  count    = var.lambda_memory_size > 0 ? 1 : 0
  name     = local.m
  role_arn = aws_iam_role.sfn[0].arn
  tags     = local.tags
  definition = jsonencode({
    StartAt = "FirstState"
    States  = { FirstState = { Type = "Pass", Result = "Hello", End = true } }
  })
  lifecycle {
    ignore_changes = [definition]
  }
}

# The front end's users (a Cognito group's role) and the shared admin role's inline policy.
data "aws_iam_policy" "config" {
  name = "s3_read_quetzal_config"
}

data "aws_iam_policy_document" "user_trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = ["cognito-identity.amazonaws.com"]
    }
    condition {
      test     = "ForAnyValue:StringEquals"
      variable = "cognito-identity.amazonaws.com:aud"
      values   = [var.cognito_identity_pool_id]
    }
    condition {
      test     = "ForAnyValue:StringLike"
      variable = "cognito-identity.amazonaws.com:amr"
      values   = ["authenticated"]
    }
  }
}

data "aws_iam_policy_document" "user_s3" {
  statement {
    actions   = ["s3:ListBucket"]
    resources = ["arn:aws:s3:::${local.m}"]
  }
  statement {
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["arn:aws:s3:::${local.m}/*"]
  }
  statement {
    effect    = "Deny"
    actions   = ["s3:PutObject", "s3:DeleteObject"]
    resources = ["arn:aws:s3:::${local.m}/base/*"]
  }
}

resource "aws_iam_role" "user" {
  name               = "Cognito_quetzal_pool_${local.m}"
  assume_role_policy = data.aws_iam_policy_document.user_trust.json
}

resource "aws_iam_policy" "user" {
  name        = "s3_read_put_${local.m}"
  description = "IAM policy to access a model S3 bucket"
  policy      = data.aws_iam_policy_document.user_s3.json
}

resource "aws_iam_role_policy_attachment" "user" {
  role       = aws_iam_role.user.name
  policy_arn = aws_iam_policy.user.arn
}

resource "aws_iam_role_policy_attachment" "config" {
  role       = aws_iam_role.user.name
  policy_arn = data.aws_iam_policy.config.arn
}

resource "aws_iam_role_policy" "admin" {
  name   = "inline_s3_read_put_${local.m}"
  role   = "Cognito_quetzal_pool_admin"
  policy = data.aws_iam_policy_document.user_s3.json
}
