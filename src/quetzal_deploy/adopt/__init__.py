"""Adopting existing model repos and live stacks: an old-layout repo (or one baked before the
template recorded its version) becomes one of ours (``quetzal-deploy adopt``), and the stack the
backend's Terraform deployed moves into the model's own state (``invoke infra --adopt``)."""
