# A model may use an existing bucket instead of its own (existing_bucket_name): the backend's
# microservices share one bucket that the front end uploads to. The module then creates no bucket
# and sets none of its settings (policy, CORS, versioning, lifecycle stay the owner's); the
# function, the Fargate steps and the users' role get rights on that bucket only, and
# `terraform destroy` deletes nothing of it.

locals {
  own_bucket  = var.existing_bucket_name == ""
  bucket_name = local.own_bucket ? aws_s3_bucket.this[0].id : var.existing_bucket_name
  bucket_arn  = "arn:${local.partition}:s3:::${local.bucket_name}"
}

# Stacks applied before existing_bucket_name keep their bucket: it moved to index 0.
moved {
  from = aws_s3_bucket.this
  to   = aws_s3_bucket.this[0]
}

moved {
  from = aws_s3_bucket_public_access_block.this
  to   = aws_s3_bucket_public_access_block.this[0]
}

moved {
  from = aws_s3_bucket_ownership_controls.this
  to   = aws_s3_bucket_ownership_controls.this[0]
}

moved {
  from = aws_s3_bucket_server_side_encryption_configuration.this
  to   = aws_s3_bucket_server_side_encryption_configuration.this[0]
}

moved {
  from = aws_s3_bucket_versioning.this
  to   = aws_s3_bucket_versioning.this[0]
}

moved {
  from = aws_s3_bucket_lifecycle_configuration.this
  to   = aws_s3_bucket_lifecycle_configuration.this[0]
}

moved {
  from = aws_s3_bucket_cors_configuration.this
  to   = aws_s3_bucket_cors_configuration.this[0]
}

moved {
  from = aws_s3_bucket_policy.this
  to   = aws_s3_bucket_policy.this[0]
}
