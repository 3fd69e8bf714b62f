"""Training runs: plans checked before the backend starts, fitting with resume,
and the drivers of source, transfer and pretraining runs."""
