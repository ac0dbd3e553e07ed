"""The AI-Toolkit training engine: writes an AI-Toolkit job config from the app's training spec, runs
upstream ``run.py`` in its own environment, and reads progress, samples and checkpoints back."""
