"""The HTTP API: OpenAI-compatible chat completions with Azure "On Your Data" data sources."""
