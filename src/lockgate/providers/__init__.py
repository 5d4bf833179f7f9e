"""Upstream adapters, one module each; ``registry`` finds them by their config ``type``."""
