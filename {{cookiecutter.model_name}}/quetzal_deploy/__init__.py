"""Deployment and run tooling of a quetzal model.

Keep this file empty of imports: the Lambda image ships only ``quetzal_deploy.runtime``.
"""
