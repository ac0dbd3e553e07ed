"""The base layer: what both the engines (``engines/``) and the app (``core``, ``storage``, ``jobs``, the UI and
the CLI) need, and nothing that knows about either.

Atomic writes, errors, resource files, logging and redaction, GPU detection and cards, the memory plan (and the model
catalogue whose file sizes it reads), a built spec's plan (spec_plan), image
decoding, caption text and safetensors headers. Modules here import only the standard library, third-party
packages and each other: never ``core``, ``storage``, ``jobs``, ``context``, the UI, the CLI or ``engines``
(import-linter's layers contract in pyproject.toml checks it).
"""
