"""Remote GPU machines over SSH: the SSH layer, the registry of remotes, their check and bootstrap (issue 16)."""
