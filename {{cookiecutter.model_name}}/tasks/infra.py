"""Infrastructure flows: infra, deploy, destroy."""
