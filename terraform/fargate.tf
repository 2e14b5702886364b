# Optional: Fargate steps, for notebooks longer or bigger than Lambda allows (create_fargate).
# A step marked for Fargate in step-functions.json becomes an ECS RunTask .waitForTaskToken
# state: the same image runs `python -m quetzal_deploy.runtime.cli` and reports to Step
# Functions itself. No VPC is created: the tasks run in the subnets and security groups given.
#
# The task definition family is "<name>-step". Never "<name>-task...": the front end's backend
# switches a model to its whole-model ECS mode when such a family exists.

variable "create_fargate" {
  description = "Create what Fargate steps need: cluster (unless fargate_cluster_name), task definition, roles, log group."
  type        = bool
  default     = false
}

variable "fargate_cluster_name" {
  description = "Existing ECS cluster to run Fargate steps in (empty: create <name>-steps)."
  type        = string
  default     = ""

  validation {
    condition     = var.fargate_cluster_name == "" || can(regex("^[A-Za-z0-9_-]{1,255}$", var.fargate_cluster_name))
    error_message = "fargate_cluster_name must be empty or an ECS cluster name (letters, digits, - and _)."
  }
}

variable "fargate_cpu" {
  description = "CPU units of a Fargate step (1024 = 1 vCPU): 256, 512, 1024, 2048, 4096, 8192 or 16384."
  type        = number
  default     = 4096

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.fargate_cpu)
    error_message = "fargate_cpu must be one of 256, 512, 1024, 2048, 4096, 8192, 16384."
  }
}

variable "fargate_memory" {
  description = "Memory of a Fargate step in MB (512-122880), one Fargate allows with fargate_cpu."
  type        = number
  default     = 16384

  validation {
    condition     = var.fargate_memory >= 512 && var.fargate_memory <= 122880 && var.fargate_memory % 512 == 0
    error_message = "fargate_memory must be 512-122880 MB, a multiple of 512 (and a size fargate_cpu allows)."
  }
}

variable "fargate_ephemeral_storage" {
  description = "Ephemeral storage of a Fargate step in GiB (21-200): its /tmp."
  type        = number
  default     = 21

  validation {
    condition     = var.fargate_ephemeral_storage >= 21 && var.fargate_ephemeral_storage <= 200 && floor(var.fargate_ephemeral_storage) == var.fargate_ephemeral_storage
    error_message = "fargate_ephemeral_storage must be a whole number of GiB from 21 to 200."
  }
}

variable "fargate_subnet_ids" {
  description = "Existing subnets Fargate steps run in; they must reach ECR, S3, CloudWatch and Step Functions."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.fargate_subnet_ids : can(regex("^subnet-[0-9a-f]+$", id))])
    error_message = "fargate_subnet_ids must be subnet ids (subnet-...)."
  }
}

variable "fargate_security_group_ids" {
  description = "Existing security groups of Fargate steps (outbound HTTPS is all they need)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.fargate_security_group_ids : can(regex("^sg-[0-9a-f]+$", id))])
    error_message = "fargate_security_group_ids must be security group ids (sg-...)."
  }
}

locals {
  fargate_family       = "${var.name}-step"
  create_cluster       = var.create_fargate && var.fargate_cluster_name == ""
  fargate_cluster_name = var.fargate_cluster_name == "" ? "${var.name}-steps" : var.fargate_cluster_name
  fargate_cluster_arn  = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:cluster/${local.fargate_cluster_name}"
  # The CPU/memory pairs Fargate accepts (quetzal_deploy/sizing.py holds the same list).
  fargate_memory_choices = {
    "256"   = [512, 1024, 2048]
    "512"   = range(1024, 4097, 1024)
    "1024"  = range(2048, 8193, 1024)
    "2048"  = range(4096, 16385, 1024)
    "4096"  = range(8192, 30721, 1024)
    "8192"  = range(16384, 61441, 4096)
    "16384" = range(32768, 122881, 8192)
  }
}

resource "aws_ecs_cluster" "steps" {
  count = local.create_cluster ? 1 : 0
  name  = local.fargate_cluster_name
  tags  = var.tags

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "fargate" {
  #checkov:skip=CKV_AWS_158:Logs hold notebook output, no secrets; CloudWatch encrypts them at rest with its own key.
  count             = var.create_fargate ? 1 : 0
  name              = "/ecs/${local.fargate_family}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# Execution role: what ECS itself needs to start the container (pull the image, write logs).
resource "aws_iam_role" "fargate_execution" {
  count              = var.create_fargate ? 1 : 0
  name               = "${var.name}-step-execution"
  description        = "Starts the ${var.name} Fargate steps: pulls the model's image, writes their log group."
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "fargate_execution" {
  count = var.create_fargate ? 1 : 0

  statement {
    # GetAuthorizationToken has no resource-level permissions.
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullModelImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [aws_ecr_repository.this.arn]
  }

  statement {
    sid       = "OwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.fargate[0].arn}:*"]
  }
}

resource "aws_iam_role_policy" "fargate_execution" {
  count  = var.create_fargate ? 1 : 0
  name   = "${var.name}-step-execution"
  role   = aws_iam_role.fargate_execution[0].id
  policy = data.aws_iam_policy_document.fargate_execution[0].json
}

# Task role: what the step itself does, the Lambda's S3 rights plus reporting to Step Functions.
resource "aws_iam_role" "fargate_task" {
  count              = var.create_fargate ? 1 : 0
  name               = "${var.name}-step"
  description        = "Runs the ${var.name} Fargate steps: its own bucket, and reports their outcome."
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "fargate_task" {
  count                   = var.create_fargate ? 1 : 0
  source_policy_documents = [data.aws_iam_policy_document.step_read_write.json]

  statement {
    # The task token names the execution; these actions accept no narrower resource.
    sid       = "ReportOutcome"
    actions   = ["states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "fargate_task" {
  count  = var.create_fargate ? 1 : 0
  name   = "${var.name}-step"
  role   = aws_iam_role.fargate_task[0].id
  policy = data.aws_iam_policy_document.fargate_task[0].json
}

resource "aws_ecs_task_definition" "step" {
  count                    = var.create_fargate ? 1 : 0
  family                   = local.fargate_family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.fargate_cpu)
  memory                   = tostring(var.fargate_memory)
  execution_role_arn       = aws_iam_role.fargate_execution[0].arn
  task_role_arn            = aws_iam_role.fargate_task[0].arn
  tags                     = var.tags

  ephemeral_storage {
    size_in_gib = var.fargate_ephemeral_storage
  }

  # /tmp is the only writable folder, as on Lambda; ECS backs it with the ephemeral storage.
  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([{
    name                   = "step"
    image                  = "${aws_ecr_repository.this.repository_url}:${var.image_tag == "" ? "latest" : var.image_tag}"
    essential              = true
    entryPoint             = ["python", "-m", "quetzal_deploy.runtime.cli"]
    workingDirectory       = "/var/task"
    readonlyRootFilesystem = true
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    environment = [
      { name = "BUCKET_NAME", value = local.bucket_name },
      { name = "TQDM_DISABLE", value = "1" },
    ]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.fargate[0].name
        awslogs-region        = local.region
        awslogs-stream-prefix = "step"
      }
    }
  }])

  lifecycle {
    precondition {
      condition     = contains(local.fargate_memory_choices[tostring(var.fargate_cpu)], var.fargate_memory)
      error_message = "Fargate does not accept fargate_memory = ${var.fargate_memory} MB with fargate_cpu = ${var.fargate_cpu}; allowed: ${join(", ", [for m in local.fargate_memory_choices[tostring(var.fargate_cpu)] : tostring(m)])}."
    }
    precondition {
      # <model>-task... switches a model to the front end's whole-model ECS mode: our family must
      # not start so for this model, nor for another one whose name ends where "-task" starts.
      condition     = !strcontains(local.fargate_family, "-task")
      error_message = "The task definition family ${local.fargate_family} holds \"-task\": the front end would switch a model to its whole-model ECS mode. Fargate steps need a model name without \"-task\"."
    }
  }
}

# The state machine starts the task and passes it its two roles; .waitForTaskToken needs no
# EventBridge rule (that is .sync) and no DescribeTasks/StopTask.
data "aws_iam_policy_document" "states_fargate" {
  count = var.create_fargate ? 1 : 0

  statement {
    sid       = "RunStepTask"
    actions   = ["ecs:RunTask"]
    resources = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${local.fargate_family}:*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [local.fargate_cluster_arn]
    }
  }

  statement {
    sid       = "PassStepRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.fargate_execution[0].arn, aws_iam_role.fargate_task[0].arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "states_fargate" {
  count  = var.create_fargate ? 1 : 0
  name   = "${var.name}-states-fargate"
  role   = aws_iam_role.states.id
  policy = data.aws_iam_policy_document.states_fargate[0].json
}

output "fargate_cluster_name" {
  description = "ECS cluster of the Fargate steps (null unless create_fargate)."
  value       = var.create_fargate ? local.fargate_cluster_name : null
}

output "fargate_task_definition_family" {
  description = "Task definition family of the Fargate steps, <name>-step (null unless create_fargate)."
  value       = var.create_fargate ? local.fargate_family : null
}

output "fargate_log_group_name" {
  description = "CloudWatch log group of the Fargate steps (null unless create_fargate)."
  value       = try(aws_cloudwatch_log_group.fargate[0].name, null)
}
