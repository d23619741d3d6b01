"""tffexec package."""
