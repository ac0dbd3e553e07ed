"""The command-line interface over the core: the same services the window uses, for scripts and tests."""
