"""Records, metrics and traces: what the gateway tells about itself."""
