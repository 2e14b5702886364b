# Optional role for the front end's users, assumed through a Cognito identity pool: read and
# write the bucket, never overwrite or delete the base scenario. The role and its inline policy
# are both named <name>-user, as quetzal_deploy.access (invoke grant-access) expects: it copies
# that policy onto the role of a Cognito group that already has one.

data "aws_iam_policy_document" "user_assume" {
  count = local.create_user_role ? 1 : 0

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = ["cognito-identity.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
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

resource "aws_iam_role" "user" {
  count = local.create_user_role ? 1 : 0

  name               = local.names.user_role
  description        = "Front end users of ${var.name}, through Cognito identity pool ${var.cognito_identity_pool_id}."
  assume_role_policy = data.aws_iam_policy_document.user_assume[0].json
  tags               = var.tags
}

data "aws_iam_policy_document" "user" {
  source_policy_documents = [data.aws_iam_policy_document.bucket_read_write.json]

  statement {
    sid       = "ProtectBaseScenario"
    effect    = "Deny"
    actions   = ["s3:PutObject", "s3:DeleteObject"]
    resources = ["${local.bucket_arn}/base/*"]
  }
}

resource "aws_iam_role_policy" "user" {
  count = local.create_user_role && !local.user_policy_managed ? 1 : 0

  name   = local.names.user_policy
  role   = aws_iam_role.user[0].id
  policy = data.aws_iam_policy_document.user.json
}

# Read access to the shared config bucket, as the front end's original user roles had. The
# front end's backend lists a user's models from the second statement of each of the role's
# policies (an Allow on the objects of a bucket): here it is a Deny, so the config bucket is
# never listed as a model.
data "aws_iam_policy_document" "user_config" {
  statement {
    sid       = "ReadConfig"
    actions   = ["s3:GetObject", "s3:ListBucket"]
    resources = ["arn:${local.partition}:s3:::${var.config_bucket_name}", "arn:${local.partition}:s3:::${var.config_bucket_name}/*"]
  }

  statement {
    sid       = "NeverWriteConfig"
    effect    = "Deny"
    actions   = ["s3:PutObject", "s3:DeleteObject"]
    resources = ["arn:${local.partition}:s3:::${var.config_bucket_name}/*"]
  }
}

resource "aws_iam_role_policy" "user_config" {
  count = local.create_user_role && var.config_bucket_name != "" ? 1 : 0

  name   = "${var.name}-user-config"
  role   = aws_iam_role.user[0].id
  policy = data.aws_iam_policy_document.user_config.json
}
