# The model's function: runs one notebook per invocation from the model's own image.

resource "aws_cloudwatch_log_group" "lambda" {
  #checkov:skip=CKV_AWS_158:Logs hold notebook output, no secrets; CloudWatch encrypts them at rest with its own key.
  name              = "/aws/lambda/${var.name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_iam_role" "lambda" {
  name               = local.names.lambda_role
  description        = "Runs the notebooks of ${var.name}: its own log group and its own bucket only."
  assume_role_policy = data.aws_iam_policy_document.service_assume["lambda"].json
  tags               = var.tags
}

data "aws_iam_policy_document" "lambda" {
  source_policy_documents = [data.aws_iam_policy_document.step_read_write.json]

  statement {
    sid       = "OwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda.arn}:*"]
  }
}

resource "aws_iam_role_policy" "lambda" {
  name   = local.names.lambda_policy
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda.json
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_50:X-Ray adds nothing to one long notebook run; the notebook's output goes to S3 logs and CloudWatch.
  #checkov:skip=CKV_AWS_116:Step Functions invokes the function synchronously and handles failures; a dead-letter queue only serves asynchronous calls.
  #checkov:skip=CKV_AWS_117:The function reaches only S3 and CloudWatch through their public endpoints; a VPC would need NAT or endpoints for nothing.
  #checkov:skip=CKV_AWS_173:The environment holds only the bucket name and TQDM_DISABLE, nothing secret.
  #checkov:skip=CKV_AWS_272:Code signing applies to .zip packages; this is a container image function.
  #checkov:skip=CKV_AWS_115:Reserving concurrency takes it from the account's shared pool, which new accounts cannot spare; set lambda_reserved_concurrency to cap runs.
  count = local.create_lambda ? 1 : 0

  function_name                  = var.name
  description                    = "Runs one notebook of the ${var.name} pipeline."
  role                           = aws_iam_role.lambda.arn
  package_type                   = "Image"
  image_uri                      = "${aws_ecr_repository.this.repository_url}:${var.image_tag}"
  architectures                  = [var.lambda_architecture]
  memory_size                    = var.lambda_memory_size
  timeout                        = var.lambda_timeout
  reserved_concurrent_executions = var.lambda_reserved_concurrency
  tags                           = var.tags

  ephemeral_storage {
    size = var.lambda_storage_size
  }

  environment {
    variables = {
      BUCKET_NAME  = local.bucket_name
      TQDM_DISABLE = "1"
    }
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.lambda.name
  }

  lifecycle {
    # `invoke push`, `update` and `rollback` move the function to new images.
    ignore_changes = [image_uri]
  }

  depends_on = [aws_iam_role_policy.lambda]
}
