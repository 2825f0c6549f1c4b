"""Engine commands of the CLI (train, serve, cluster, validate ...), one module each."""
