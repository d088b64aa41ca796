"""LlamaIndex integration of scorer (filled in by the integrations work)."""
