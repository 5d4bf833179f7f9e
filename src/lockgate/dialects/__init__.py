"""What clients speak: each module parses its wire format into ``lockgate.core`` and renders back."""
