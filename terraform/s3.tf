# The model's bucket: scenarios under <scenario>/, model-wide files under _common/.

resource "aws_s3_bucket" "this" {
  count = local.own_bucket ? 1 : 0

  #checkov:skip=CKV_AWS_18:Access logging needs a separate log bucket per account; CloudTrail data events are the account-wide choice.
  #checkov:skip=CKV_AWS_144:Scenarios are working data that users can re-run; cross-region replication would double cost for no recovery need.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to object events; the pipeline is started by the front end.
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256) encryption is enforced; a customer KMS key would add cost and key policy management per model.
  bucket        = var.name
  force_destroy = var.bucket_force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "this" {
  count = local.own_bucket ? 1 : 0

  bucket = aws_s3_bucket.this[0].id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  count = local.own_bucket ? 1 : 0

  bucket = aws_s3_bucket.this[0].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  count = local.own_bucket ? 1 : 0

  bucket = aws_s3_bucket.this[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "this" {
  count = local.own_bucket ? 1 : 0

  bucket = aws_s3_bucket.this[0].id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  count = local.own_bucket ? 1 : 0

  bucket = aws_s3_bucket.this[0].id

  rule {
    id     = "expire-old-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_cors_configuration" "this" {
  count = local.own_bucket ? 1 : 0

  bucket = aws_s3_bucket.this[0].id

  cors_rule {
    allowed_origins = var.cors_allowed_origins
    allowed_methods = var.cors_allowed_methods
    allowed_headers = ["*"]
    expose_headers  = var.cors_expose_headers
    max_age_seconds = 3000
  }
}

data "aws_iam_policy_document" "bucket" {
  count = local.own_bucket ? 1 : 0

  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.this[0].arn,
      "${aws_s3_bucket.this[0].arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  count = local.own_bucket ? 1 : 0

  bucket = aws_s3_bucket.this[0].id
  policy = data.aws_iam_policy_document.bucket[0].json

  depends_on = [aws_s3_bucket_public_access_block.this]
}

# The model's bucket (its own or the existing one) and nothing else, for the function and the front end's users.
data "aws_iam_policy_document" "bucket_read_write" {
  statement {
    # ListBucket also makes a missing key a 404 instead of a 403 for the front end.
    sid       = "ListBucket"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
  }

  statement {
    sid       = "ReadWriteObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${local.bucket_arn}/*"]
  }
}

# The steps' roles (Lambda, Fargate) only: the transfer code deletes a version it wrote whose bytes
# changed while they were sent (runtime/transfer.py); the front end's users keep no such right.
data "aws_iam_policy_document" "step_read_write" {
  source_policy_documents = [data.aws_iam_policy_document.bucket_read_write.json]

  statement {
    sid       = "DeleteVersionsWritten"
    actions   = ["s3:DeleteObjectVersion"]
    resources = ["${local.bucket_arn}/*"]
  }
}
