"""Shared fixtures live in tests/fixtures/, one module per part (AWS emulator, bakes, Docker)."""

pytest_plugins = ["fixtures.parts", "fixtures.aws", "fixtures.bake", "fixtures.docker", "fixtures.terraform"]
