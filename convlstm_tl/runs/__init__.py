"""Run directories: written complete or not at all, their one record schema, and finding and loading a finished run."""
