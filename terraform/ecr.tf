# The model's image repository: `invoke push` builds and pushes here.

resource "aws_ecr_repository" "this" {
  #checkov:skip=CKV_AWS_51:Tags are moved on purpose: `invoke push` retags the current image and `invoke rollback` points back to an older one.
  #checkov:skip=CKV_AWS_136:AES256 encryption at rest is on; a customer KMS key would add cost and key policy management per model.
  name                 = var.name
  image_tag_mutability = "MUTABLE"
  force_delete         = var.ecr_force_delete
  tags                 = var.tags

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "AES256"
  }
}

resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the last ${var.ecr_keep_images} images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = var.ecr_keep_images
      }
      action = { type = "expire" }
    }]
  })
}

# Lets the Lambda service pull the image for this model's function only (what Lambda would
# otherwise add to the repository policy itself, when the deploying identity may).
data "aws_iam_policy_document" "ecr" {
  statement {
    sid     = "LambdaECRImageRetrievalPolicy"
    actions = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringLike"
      variable = "aws:sourceArn"
      values   = [local.function_arn]
    }
  }
}

resource "aws_ecr_repository_policy" "this" {
  repository = aws_ecr_repository.this.name
  policy     = data.aws_iam_policy_document.ecr.json
}
