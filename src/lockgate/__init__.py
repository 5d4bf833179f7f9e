"""lockgate: one secure, fast front door to every AI model an organisation uses."""

__version__ = "0.1.0"
