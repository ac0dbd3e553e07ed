"""The model manager (issue 10): the catalogue of base models, what the volume holds, and downloads from the hub.

Qt-free. ``hub`` talks to the Hugging Face hub and downloads with resume and verification, ``ledger`` remembers
which files were verified, ``download_job`` is the worker side of a job of kind "download".
"""
