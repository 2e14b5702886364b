# Names a stack keeps when it was created by another configuration: `invoke infra --adopt`
# imports the production stack of the backend's Terraform (roles lambda-<m>-role, sfn-<m>-role,
# Cognito_quetzal_pool_<m>, ...) and must not rename what Cognito groups, the front end and the
# backend hold on to (an IAM name cannot change in place). A new model leaves all of this unset.

variable "resource_names" {
  description = "Names of the IAM roles and policies, when they differ from the defaults (<name>-lambda, <name>-states, <name>-user, <name>-admin). lambda_logging_policy and user_policy_managed add the managed policies an adopted stack already has."
  type = object({
    lambda_role           = optional(string)
    lambda_policy         = optional(string)
    lambda_logging_policy = optional(string)
    states_role           = optional(string)
    states_policy         = optional(string)
    user_role             = optional(string)
    user_policy           = optional(string)
    user_policy_managed   = optional(bool, false)
    admin_policy          = optional(string)
  })
  default = {}

  validation {
    condition     = alltrue([for key, value in var.resource_names : value == null || can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", tostring(value))) if key != "user_policy_managed"])
    error_message = "Each name must be 1 to 64 letters, digits or +=,.@_- (IAM names)."
  }
}

variable "admin_role_name" {
  description = "Existing role of the front end's admins (e.g. Cognito_quetzal_pool_admin) that gets an inline policy on this model's bucket; empty: none."
  type        = string
  default     = ""

  validation {
    condition     = var.admin_role_name == "" || can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.admin_role_name))
    error_message = "The admin role name must be an IAM role name (1 to 64 letters, digits or +=,.@_-), or empty."
  }
}

variable "user_role_managed_policies" {
  description = "Names of existing managed policies attached to the user role (e.g. s3_read_quetzal_config, the front end's config read policy)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for name in var.user_role_managed_policies : can(regex("^[A-Za-z0-9+=,.@_-]{1,128}$", name))])
    error_message = "Each policy name must be 1 to 128 letters, digits or +=,.@_-."
  }
}

locals {
  names = {
    lambda_role   = coalesce(var.resource_names.lambda_role, "${var.name}-lambda")
    lambda_policy = coalesce(var.resource_names.lambda_policy, "${var.name}-lambda")
    states_role   = coalesce(var.resource_names.states_role, "${var.name}-states")
    states_policy = coalesce(var.resource_names.states_policy, "${var.name}-states")
    user_role     = coalesce(var.resource_names.user_role, "${var.name}-user")
    user_policy   = coalesce(var.resource_names.user_policy, "${var.name}-user")
    admin_policy  = coalesce(var.resource_names.admin_policy, "${var.name}-admin")
  }
  lambda_logging_policy = var.resource_names.lambda_logging_policy == null ? [] : [var.resource_names.lambda_logging_policy]
  user_policy_managed   = local.create_user_role && var.resource_names.user_policy_managed
}

# The logging rights as a managed policy of their own (the inline policy has them too).
resource "aws_iam_policy" "lambda_logging" {
  for_each = toset(local.lambda_logging_policy)

  name        = each.key
  description = "IAM policy for logging from a lambda"
  policy      = data.aws_iam_policy_document.lambda_logging.json
  tags        = var.tags
}

data "aws_iam_policy_document" "lambda_logging" {
  statement {
    sid       = "OwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda.arn}:*"]
  }
}

resource "aws_iam_role_policy_attachment" "lambda_logging" {
  for_each = aws_iam_policy.lambda_logging

  role       = aws_iam_role.lambda.name
  policy_arn = each.value.arn
}

# The user role's bucket policy as a managed policy (instead of inline), named resource_names.user_policy.
resource "aws_iam_policy" "user" {
  count = local.user_policy_managed ? 1 : 0

  name        = local.names.user_policy
  description = "IAM policy to access a model S3 bucket"
  policy      = data.aws_iam_policy_document.user.json
  tags        = var.tags
}

resource "aws_iam_role_policy_attachment" "user" {
  count = local.user_policy_managed ? 1 : 0

  role       = aws_iam_role.user[0].name
  policy_arn = aws_iam_policy.user[0].arn
}

data "aws_iam_policy" "user_managed" {
  for_each = toset(local.create_user_role ? var.user_role_managed_policies : [])

  name = each.key
}

resource "aws_iam_role_policy_attachment" "user_managed" {
  for_each = data.aws_iam_policy.user_managed

  role       = aws_iam_role.user[0].name
  policy_arn = each.value.arn
}

# The admins' role sees every model in the front end: the users' bucket policy, inline on it.
resource "aws_iam_role_policy" "admin" {
  count = var.admin_role_name == "" ? 0 : 1

  name   = local.names.admin_policy
  role   = var.admin_role_name
  policy = data.aws_iam_policy_document.user.json
}
