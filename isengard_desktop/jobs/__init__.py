"""Qt-free job manager: a queue of jobs, each run in a worker subprocess speaking JSON lines."""
