"""Wire formats shared by a client dialect and the providers that speak the same format: SSE
framing, and the parts of OpenAI's and Anthropic's shapes both sides read and write. Below
``dialects`` and ``providers``, above ``core``: neither side imports the other."""
