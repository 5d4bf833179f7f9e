"""The fault-injection suite (``pytest tests/faults``): upstream timeouts, resets, 5xx storms,
stalled and slow streams, slow clients, Redis and the database down and back, SIGTERM
mid-stream and a killed worker. Each test asserts what the client sees and that no record and
no budget cent is lost (the README's "Fault injection" table lists them)."""
