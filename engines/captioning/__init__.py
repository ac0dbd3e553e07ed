"""Automatic captions for a character's photos with a vision-language model (Qwen3-VL through transformers).

``captioner`` loads the model folder and captions one photo at a time; ``job`` is the worker side of a job of kind
"caption" (progress, cancel, one ``artifact`` event per caption); ``tiny_model`` builds the random-weight Qwen3-VL
that fast-test mode and the tests run through the same code. Runs only in worker processes (it imports torch).
"""
