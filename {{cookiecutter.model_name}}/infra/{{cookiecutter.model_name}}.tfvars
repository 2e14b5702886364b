# Sizes and names of {{ cookiecutter.model_name }}'s stack. Keep the Lambda sizes equal to .env's.
model_name               = "{{ cookiecutter.model_name }}"
aws_region               = "{{ cookiecutter.aws_region }}"
lambda_memory_size       = {{ cookiecutter.lambda_memory_size | int }}
lambda_timeout           = {{ cookiecutter.lambda_time_limit | int }}
lambda_storage_size      = {{ cookiecutter.lambda_storage_size | int }}
lambda_architecture      = "{{ cookiecutter.lambda_architecture }}"
log_retention_days       = 365
cors_allowed_origins     = {{ cookiecutter.cors_allowed_origins.split(",") | map("trim") | list | tojson }}
ecr_keep_images          = 10
auth_function_name       = "{{ cookiecutter.auth_function_name }}"
cognito_identity_pool_id = "{{ cookiecutter.cognito_identity_pool_id }}"
