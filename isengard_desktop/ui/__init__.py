"""The PySide6 window: the only package that imports Qt. Widgets listen to the core; they hold no data."""
