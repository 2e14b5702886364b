# Optional CI part (off while ci_repository is empty): the role the model repo's CI deploy job
# (GitHub Actions or GitLab CI/CD, ci_provider) assumes through its OIDC provider, with no stored AWS
# keys. It may push this model's image, point this model's function at it, update this model's state
# machine and write the bucket's _common/ prefix; nothing of another model. Trusted for one
# repository's (or GitLab project's) deploy ref.

variable "ci_provider" {
  description = "Where the model's CI runs: github (GitHub Actions) or gitlab (GitLab CI/CD on gitlab.com)."
  type        = string
  default     = "github"

  validation {
    condition     = contains(["github", "gitlab"], var.ci_provider)
    error_message = "ci_provider must be github or gitlab."
  }
}

variable "ci_repository" {
  description = "Repository whose CI deploys this model: GitHub owner/name (systragroup/quetzal-paris) or GitLab project path (group/subgroup/project); empty: no CI part."
  type        = string
  default     = ""

  validation {
    condition     = var.ci_repository == "" || can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)+$", var.ci_repository))
    error_message = "ci_repository must be owner/name of a GitHub repository or group/project of a GitLab project, or empty."
  }
}

variable "ci_deploy_ref" {
  description = "Git ref the deploy role trusts: refs/tags/v* (a version tag) or refs/heads/main (a push to main); a * matches any characters."
  type        = string
  default     = "refs/tags/v*"

  validation {
    condition     = can(regex("^refs/(tags|heads)/[A-Za-z0-9._/*-]+$", var.ci_deploy_ref))
    error_message = "ci_deploy_ref must be refs/tags/<pattern> or refs/heads/<branch>."
  }
}

variable "ci_oidc_provider_arn" {
  description = "ARN of the account's existing OIDC provider of ci_provider (one per account: the first model creates it); empty: this module creates it."
  type        = string
  default     = ""

  validation {
    condition     = var.ci_oidc_provider_arn == "" || can(regex("^arn:[a-z-]+:iam::[0-9]{12}:oidc-provider/(token\\.actions\\.githubusercontent\\.com|gitlab\\.com)$", var.ci_oidc_provider_arn))
    error_message = "ci_oidc_provider_arn must be the ARN of a token.actions.githubusercontent.com or gitlab.com OIDC provider, or empty."
  }
}

locals {
  create_ci   = var.ci_repository != ""
  ci_github   = var.ci_provider == "github"
  ci_issuer   = local.ci_github ? "token.actions.githubusercontent.com" : "gitlab.com"
  ci_audience = local.ci_github ? "sts.amazonaws.com" : "https://gitlab.com" # the deploy job's token audience
  ci_ref      = regex("^refs/(tags|heads)/(.+)$", var.ci_deploy_ref)
  # GitHub: repo:<owner/name>:ref:<ref>; GitLab: project_path:<path>:ref_type:<tag|branch>:ref:<name>
  ci_subject = (local.ci_github ? "repo:${var.ci_repository}:ref:${var.ci_deploy_ref}"
  : "project_path:${var.ci_repository}:ref_type:${local.ci_ref[0] == "tags" ? "tag" : "branch"}:ref:${local.ci_ref[1]}")
  ci_provider    = var.ci_oidc_provider_arn != "" ? var.ci_oidc_provider_arn : "arn:${local.partition}:iam::${local.account_id}:oidc-provider/${local.ci_issuer}"
  ci_machine_arn = "arn:${local.partition}:states:${local.region}:${local.account_id}:stateMachine:${var.name}"
  ci_step_roles  = ["arn:${local.partition}:iam::${local.account_id}:role/${var.name}-step-execution", "arn:${local.partition}:iam::${local.account_id}:role/${var.name}-step"]
}

resource "aws_iam_openid_connect_provider" "ci" {
  count = local.create_ci && var.ci_oidc_provider_arn == "" ? 1 : 0

  url            = "https://${local.ci_issuer}"
  client_id_list = [local.ci_audience]
  # GitHub's published certificate thumbprints (IAM trusts its root CAs for this issuer anyway);
  # none for GitLab: IAM then checks gitlab.com's certificate against its trusted root CAs.
  thumbprint_list = local.ci_github ? ["6938fd4d98bab03faadb97b34396831e3780aea1", "1c58a3a8518e8759bf075b76b750d4f2df264fcd"] : null
  tags            = var.tags
}

data "aws_iam_policy_document" "ci_assume" {
  count = local.create_ci ? 1 : 0

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.ci_provider]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.ci_issuer}:aud"
      values   = [local.ci_audience]
    }

    condition {
      test     = "StringLike"
      variable = "${local.ci_issuer}:sub"
      values   = [local.ci_subject]
    }
  }
}

resource "aws_iam_role" "ci" {
  count = local.create_ci ? 1 : 0

  name                 = "${var.name}-ci-deploy"
  assume_role_policy   = data.aws_iam_policy_document.ci_assume[0].json
  max_session_duration = 3600
  tags                 = var.tags
  depends_on           = [aws_iam_openid_connect_provider.ci]

  lifecycle {
    precondition {
      condition     = !local.ci_github || can(regex("^[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}$", var.ci_repository))
      error_message = "With ci_provider github, ci_repository must be owner/name of a GitHub repository."
    }
  }
}

# What `invoke push`, `invoke update-steps` and `invoke publish-config` call, on this model only.
data "aws_iam_policy_document" "ci" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # the registry token has no resource of its own
  }

  statement {
    sid = "Image"
    actions = [
      "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload", "ecr:DescribeImages",
      "ecr:DescribeRepositories", "ecr:GetDownloadUrlForLayer", "ecr:InitiateLayerUpload", "ecr:PutImage",
      "ecr:UploadLayerPart",
    ]
    resources = [aws_ecr_repository.this.arn]
  }

  statement {
    sid       = "Function"
    actions   = ["lambda:GetFunction", "lambda:GetFunctionConfiguration", "lambda:UpdateFunctionCode"]
    resources = [local.function_arn]
  }

  statement {
    sid       = "FindStateMachine"
    actions   = ["states:ListStateMachines"]
    resources = ["*"] # a listing has no resource; it returns names and ARNs only
  }

  statement {
    sid       = "StateMachine"
    actions   = ["states:DescribeStateMachine", "states:UpdateStateMachine"]
    resources = [local.ci_machine_arn]
  }

  statement {
    sid       = "FargateSteps"
    actions   = ["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"]
    resources = ["*"] # DescribeTaskDefinition takes no resource; registering is limited by PassRole below
  }

  statement {
    sid       = "FargateStepRoles"
    actions   = ["iam:PassRole"]
    resources = local.ci_step_roles

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  statement {
    sid       = "StaleUploads"
    actions   = ["s3:ListBucketMultipartUploads"]
    resources = [local.bucket_arn] # takes no prefix condition; aborting is limited to _common/ below
  }

  statement {
    sid       = "ListCommon"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["_common/*"]
    }
  }

  statement {
    sid       = "WriteCommon"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${local.bucket_arn}/_common/*"]
  }
}

resource "aws_iam_role_policy" "ci" {
  count = local.create_ci ? 1 : 0

  name   = "${var.name}-ci-deploy"
  role   = aws_iam_role.ci[0].id
  policy = data.aws_iam_policy_document.ci.json
}

output "ci_deploy_role_arn" {
  description = "ARN of the role the repository's CI assumes (its QUETZAL_DEPLOY_ROLE_ARN variable, GitHub or GitLab); null without ci_repository."
  value       = local.create_ci ? aws_iam_role.ci[0].arn : null
}
