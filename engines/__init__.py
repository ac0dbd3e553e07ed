"""Engine plugins behind engines/interface.py; the core never imports their internals."""
