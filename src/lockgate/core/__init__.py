"""Canonical, typed, I/O-free request/response/stream-event types shared by dialects and providers."""
