# What only Terraform uses for {{ cookiecutter.model_name }}'s stack. The model name, region, Lambda sizes
# and architecture, auth function, identity pool and config bucket come from .env: `invoke infra` passes them
# (-var), so they have one source.
log_retention_days   = 365
cors_allowed_origins = {{ cookiecutter.cors_allowed_origins.split(",") | map("trim") | list | tojson }}
ecr_keep_images      = 10
