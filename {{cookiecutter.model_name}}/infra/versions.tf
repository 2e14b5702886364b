terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
  }

{%- if cookiecutter.terraform_state_bucket == "local" %}
  # State is local (infra/terraform.tfstate.d/<workspace>/, git-ignored): one user only. To share
  # it, replace "local" with "s3" and put bucket, key, region and use_lockfile = true in
  # infra/backend.hcl, which `invoke infra` passes to `terraform init -backend-config`.
  backend "local" {}
{%- else %}
  # State is shared in S3 (settings in infra/backend.hcl, which `invoke infra` passes to
  # `terraform init`): every clone of the repo sees the same stack, and a lock file next to the
  # state lets one apply run at a time.
  backend "s3" {}
{%- endif %}
}

provider "aws" {
  region = var.aws_region
}
