# The model's pipeline. Its definition is deployed by `invoke update-steps` from
# step-functions.json; Terraform creates the machine with a placeholder and leaves it alone.

resource "aws_cloudwatch_log_group" "states" {
  #checkov:skip=CKV_AWS_158:Execution logs hold state inputs and outputs, no secrets; CloudWatch encrypts them at rest with its own key.
  name              = "/aws/vendedlogs/states/${var.name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_iam_role" "states" {
  name               = local.names.states_role
  description        = "Runs the ${var.name} pipeline: invokes the model's function (and the auth function) only."
  assume_role_policy = data.aws_iam_policy_document.service_assume["states"].json
  tags               = var.tags
}

data "aws_iam_policy_document" "states" {
  statement {
    sid       = "InvokeModelFunctions"
    actions   = ["lambda:InvokeFunction"]
    resources = local.invokable_functions
  }

  statement {
    # CloudWatch Logs delivery for Step Functions has no resource-level permissions.
    sid = "DeliverExecutionLogs"
    actions = [
      "logs:CreateLogDelivery",
      "logs:GetLogDelivery",
      "logs:UpdateLogDelivery",
      "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries",
      "logs:PutResourcePolicy",
      "logs:DescribeResourcePolicies",
      "logs:DescribeLogGroups",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "states" {
  name   = local.names.states_policy
  role   = aws_iam_role.states.id
  policy = data.aws_iam_policy_document.states.json
}

resource "aws_sfn_state_machine" "this" {
  #checkov:skip=CKV_AWS_284:X-Ray adds nothing to a pipeline of long Lambda steps; execution history and logs are kept.
  name     = var.name
  role_arn = aws_iam_role.states.arn
  tags     = var.tags

  definition = jsonencode({
    Comment = "Placeholder: `invoke update-steps` deploys step-functions.json here."
    StartAt = "NotDeployed"
    States = {
      NotDeployed = {
        Type  = "Fail"
        Error = "NotDeployed"
        Cause = "Run `invoke update-steps` to deploy the pipeline."
      }
    }
  })

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.states.arn}:*"
    include_execution_data = true
    level                  = "ERROR"
  }

  lifecycle {
    ignore_changes = [definition]
  }

  depends_on = [aws_iam_role_policy.states]
}
