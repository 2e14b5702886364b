# Access of the front end's users. The S3 policy is always created, so `invoke grant-access`
# can attach it to the role a Cognito group already has; the model's own user role, trusted
# by the identity pool, is created when an identity pool id is given. Both read and write the
# bucket but never overwrite or delete the base scenario. Names are those quetzal_deploy.access
# expects.

locals {
  user_role_name   = "Cognito_quetzal_pool_${var.name}"
  user_policy_name = "s3_read_put_${var.name}"
}

data "aws_iam_policy_document" "user" {
  statement {
    # ListBucket makes a missing key a 404 instead of a 403 for the front end.
    sid       = "ListBucket"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.this.arn]
  }

  statement {
    sid       = "ReadWriteObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.this.arn}/*"]
  }

  statement {
    sid       = "ProtectBaseScenario"
    effect    = "Deny"
    actions   = ["s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.this.arn}/base/*"]
  }
}

resource "aws_iam_policy" "user" {
  name        = local.user_policy_name
  description = "Front end users of ${var.name}: its bucket, without writes to the base scenario."
  policy      = data.aws_iam_policy_document.user.json
  tags        = var.tags
}

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

  name               = local.user_role_name
  description        = "Front end users of ${var.name}, through Cognito identity pool ${var.cognito_identity_pool_id}."
  assume_role_policy = data.aws_iam_policy_document.user_assume[0].json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "user" {
  count = local.create_user_role ? 1 : 0

  role       = aws_iam_role.user[0].name
  policy_arn = aws_iam_policy.user.arn
}
