terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
  }

  # State is local (infra/terraform.tfstate.d/<workspace>/, git-ignored) unless you share it:
  # replace "local" with "s3" and put bucket, key, region (and use_lockfile = true) in
  # infra/backend.hcl, which `invoke infra` passes to `terraform init -backend-config`.
  backend "local" {}
}

provider "aws" {
  region = var.aws_region
}
