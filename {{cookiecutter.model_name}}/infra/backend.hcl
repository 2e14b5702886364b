# Where the Terraform state of {{ cookiecutter.model_name }} lives: the team's state bucket, one key per
# model (<workspace_key_prefix>/<model>/<key>, the workspace being the model). `invoke infra` and
# `invoke deploy` create the bucket when it is missing: versioned, encrypted, public access blocked.
bucket               = "{{ cookiecutter.terraform_state_bucket }}"
workspace_key_prefix = "models"
key                  = "terraform.tfstate"
region               = "{{ cookiecutter.aws_region }}"
encrypt              = true
use_lockfile         = true
