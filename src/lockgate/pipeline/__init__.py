"""THE request path, one module per step in call order:
body -> auth -> limits -> route -> call (retries/fallbacks) -> relay -> record.
``chat`` strings them together for the chat endpoints; read it top to bottom."""
