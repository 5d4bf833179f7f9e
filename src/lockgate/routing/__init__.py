"""Pure routing decisions (weights, order): no I/O, tested with plain values."""
