"""Check photos (issue 12): what in a character's photos will hurt the likeness, before training.

``measure`` (faces, blur, exposure, perceptual hashes; OpenCV, worker side), ``embedder`` and ``tiny_embedder``
(face identity: SFace in production, a tiny local ONNX in fast-test), ``cache`` (figures per content hash),
``analyse`` (issues, near-copies, identity scores, the verdict; no OpenCV), ``job`` (the worker's dataset_check
job) and ``service`` (submit a check, read the report: the window and the CLI).
"""
