"""Image flows: build, push, update, rollback, test-lambda, shell, requirements."""
