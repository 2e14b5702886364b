variable "name" {
  description = "Model name: the name of its S3 bucket, ECR repository, Lambda function, state machine and IAM roles."
  type        = string

  validation {
    condition     = length(var.name) >= 3 && length(var.name) <= 57
    error_message = "The name must be 3 to 57 characters long: S3 bucket rules, and room for the -lambda and -states suffixes of its IAM role names (64 at most)."
  }
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]*[a-z0-9]$", var.name))
    error_message = "The name may only contain lowercase letters, digits and hyphens, and must start and end with a letter or digit (dots break TLS)."
  }
  validation {
    condition     = !startswith(var.name, "xn--") && !startswith(var.name, "sthree-") && !startswith(var.name, "amzn-s3-demo-")
    error_message = "The name must not start with 'xn--', 'sthree-' or 'amzn-s3-demo-' (reserved by S3)."
  }
  validation {
    condition     = !endswith(var.name, "-s3alias") && !endswith(var.name, "--ol-s3") && !endswith(var.name, "--x-s3") && !endswith(var.name, "--table-s3")
    error_message = "The name must not end with '-s3alias', '--ol-s3', '--x-s3' or '--table-s3' (reserved by S3)."
  }
}

variable "create_lambda" {
  description = "Create the Lambda function. False for the bootstrap phase, before the model's first image is in the ECR repository."
  type        = bool
  default     = true
}

variable "image_tag" {
  description = "Tag of the model's image in its ECR repository that the Lambda function is created with; later image updates are made by `invoke push` and ignored here."
  type        = string
  default     = ""

  validation {
    condition     = var.image_tag == "" || can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "The image tag must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'."
  }
}

variable "lambda_memory_size" {
  description = "Memory of the Lambda function in MB (128-10240)."
  type        = number
  default     = 4016

  validation {
    condition     = var.lambda_memory_size >= 128 && var.lambda_memory_size <= 10240 && floor(var.lambda_memory_size) == var.lambda_memory_size
    error_message = "Lambda memory must be a whole number of MB from 128 to 10240."
  }
}

variable "lambda_timeout" {
  description = "Time limit of one notebook step (one Lambda invocation) in seconds (1-900)."
  type        = number
  default     = 300

  validation {
    condition     = var.lambda_timeout >= 1 && var.lambda_timeout <= 900 && floor(var.lambda_timeout) == var.lambda_timeout
    error_message = "The Lambda timeout must be a whole number of seconds from 1 to 900."
  }
}

variable "lambda_storage_size" {
  description = "Ephemeral storage (/tmp) of the Lambda function in MB (512-10240)."
  type        = number
  default     = 4016

  validation {
    condition     = var.lambda_storage_size >= 512 && var.lambda_storage_size <= 10240 && floor(var.lambda_storage_size) == var.lambda_storage_size
    error_message = "Lambda ephemeral storage must be a whole number of MB from 512 to 10240."
  }
}

variable "lambda_architecture" {
  description = "CPU architecture of the Lambda function and its image: x86_64 or arm64 (cheaper per GB-second)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "The Lambda architecture must be x86_64 or arm64."
  }
}

variable "lambda_reserved_concurrency" {
  description = "Concurrent runs reserved for (and capping) the model's Lambda function; null reserves none."
  type        = number
  default     = null

  validation {
    condition     = coalesce(var.lambda_reserved_concurrency, 1) >= 1 && coalesce(var.lambda_reserved_concurrency, 1) <= 1000 && floor(coalesce(var.lambda_reserved_concurrency, 1)) == coalesce(var.lambda_reserved_concurrency, 1)
    error_message = "Reserved concurrency must be null or a whole number from 1 to 1000."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the logs of the Lambda function and the state machine."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "Log retention must be one of CloudWatch's values: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653 days."
  }
}

variable "cors_allowed_origins" {
  description = "Origins (the front end's URL, or \"*\") allowed to use the bucket from a browser."
  type        = list(string)

  validation {
    condition     = length(var.cors_allowed_origins) > 0 && alltrue([for origin in var.cors_allowed_origins : can(regex("^(\\*|https?://(\\*\\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?)$", origin))])
    error_message = "Give at least one origin, each like \"https://app.example.com\" or \"*\"."
  }
}

variable "cors_allowed_methods" {
  description = "HTTP methods the front end uses on the bucket."
  type        = list(string)
  default     = ["GET", "PUT", "POST", "DELETE", "HEAD"]

  validation {
    condition     = length(var.cors_allowed_methods) > 0 && alltrue([for method in var.cors_allowed_methods : contains(["GET", "PUT", "POST", "DELETE", "HEAD"], method)])
    error_message = "CORS methods must be among GET, PUT, POST, DELETE and HEAD."
  }
}

variable "cors_expose_headers" {
  description = "Response headers the front end reads (ETag, and the checksum and user_email object metadata)."
  type        = list(string)
  default     = ["ETag", "x-amz-meta-checksum", "x-amz-meta-user_email"]

  validation {
    condition     = alltrue([for header in var.cors_expose_headers : can(regex("^[A-Za-z0-9_-]+$", header))])
    error_message = "Each exposed header must be a header name (letters, digits, '-' and '_')."
  }
}

variable "bucket_force_destroy" {
  description = "Let `terraform destroy` delete the bucket even when it still holds objects (`invoke destroy` empties it first either way)."
  type        = bool
  default     = false
}

variable "noncurrent_version_expiration_days" {
  description = "Days S3 keeps an overwritten or deleted object's old version before deleting it."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "Noncurrent version expiration must be a whole number of days, at least 1."
  }
}

variable "ecr_keep_images" {
  description = "Number of most recent images the ECR repository keeps (older ones are expired; `invoke rollback` can go back this far)."
  type        = number
  default     = 10

  validation {
    condition     = var.ecr_keep_images >= 1 && var.ecr_keep_images <= 1000 && floor(var.ecr_keep_images) == var.ecr_keep_images
    error_message = "The number of images to keep must be a whole number from 1 to 1000."
  }
}

variable "ecr_force_delete" {
  description = "Let `terraform destroy` delete the ECR repository even when it still holds images."
  type        = bool
  default     = true
}

variable "auth_function_name" {
  description = "Name of the shared authorization Lambda function the state machine may invoke first (empty: none)."
  type        = string
  default     = ""

  validation {
    condition     = var.auth_function_name == "" || can(regex("^[A-Za-z0-9_-]{1,64}$", var.auth_function_name))
    error_message = "The auth function name must be 1 to 64 letters, digits, '-' or '_', or empty."
  }
}

variable "cognito_identity_pool_id" {
  description = "Cognito identity pool whose users get the model's user role (empty: no user role)."
  type        = string
  default     = ""

  validation {
    condition     = var.cognito_identity_pool_id == "" || can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.cognito_identity_pool_id))
    error_message = "The identity pool id must look like 'ca-central-1:0a1b2c3d-1111-2222-3333-444455556666', or be empty."
  }
}

variable "config_bucket_name" {
  description = "Shared config bucket of the front end (cognito_group_access.json) that the user role may read (empty: none)."
  type        = string
  default     = ""

  validation {
    condition     = var.config_bucket_name == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.config_bucket_name))
    error_message = "The config bucket name must be an S3 bucket name (3-63 lowercase letters, digits, '.' and '-'), or empty."
  }
  validation {
    condition     = !startswith(var.config_bucket_name, "xn--") && !startswith(var.config_bucket_name, "sthree-") && !startswith(var.config_bucket_name, "amzn-s3-demo-") && !endswith(var.config_bucket_name, "-s3alias") && !endswith(var.config_bucket_name, "--ol-s3") && !endswith(var.config_bucket_name, "--x-s3") && !endswith(var.config_bucket_name, "--table-s3")
    error_message = "The config bucket name must not start with 'xn--', 'sthree-' or 'amzn-s3-demo-', nor end with '-s3alias', '--ol-s3', '--x-s3' or '--table-s3' (reserved by S3)."
  }
}

variable "tags" {
  description = "Tags added to every resource of the model."
  type        = map(string)
  default     = {}

  validation {
    condition     = length(var.tags) <= 40 && alltrue([for key, value in var.tags : length(key) >= 1 && length(key) <= 128 && length(value) <= 256 && !startswith(lower(key), "aws:")])
    error_message = "Tags: at most 40, keys of 1 to 128 characters not starting with 'aws:', values of at most 256 characters."
  }
}

variable "existing_bucket_name" {
  description = "An existing bucket the model uses instead of creating <name> (e.g. the bucket the backend's microservices share); empty: the module creates and manages <name>. The module never changes or deletes an existing bucket."
  type        = string
  default     = ""

  validation {
    condition     = var.existing_bucket_name == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.existing_bucket_name))
    error_message = "existing_bucket_name must be an S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit."
  }
}
