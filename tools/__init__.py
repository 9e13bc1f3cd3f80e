"""Developer tools of the hub project (not installed with the hub)."""
