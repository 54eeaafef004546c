"""/ops: the back office's web console, for staff only (deni.entrypoints.ops.app)."""
