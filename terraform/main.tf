# One quetzal model's AWS stack. Every resource is named after var.name; no account id,
# region or ARN is written here: they come from the data sources below.

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  # Known before the function exists, so roles and policies do not depend on it.
  function_arn      = "arn:${local.partition}:lambda:${local.region}:${local.account_id}:function:${var.name}"
  auth_function_arn = "arn:${local.partition}:lambda:${local.region}:${local.account_id}:function:${var.auth_function_name}"
  invokable_functions = concat(
    [local.function_arn, "${local.function_arn}:*"],
    var.auth_function_name == "" ? [] : [local.auth_function_arn, "${local.auth_function_arn}:*"],
  )

  create_lambda    = var.create_lambda && var.image_tag != ""
  create_user_role = var.cognito_identity_pool_id != ""
}

# Trust policies of the model's two service roles: only this account's Lambda / Step Functions.
data "aws_iam_policy_document" "service_assume" {
  for_each = toset(["lambda", "states"])

  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["${each.key}.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}
