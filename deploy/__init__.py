"""The composition root: configuration, the CLI, the embedded local stack, deploy files."""
