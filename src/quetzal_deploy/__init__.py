"""quetzal-deploy: deployment and run tooling of a quetzal model.

Keep this file free of imports: the Lambda image ships it with ``quetzal_deploy.runtime`` only.
"""

__version__ = "1.0.0"
