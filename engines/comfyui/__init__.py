"""The ``comfyui`` image engine: upstream ComfyUI run headless on 127.0.0.1, driven with our own workflows."""
