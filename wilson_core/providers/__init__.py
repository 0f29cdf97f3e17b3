"""Built-in provider drivers (``wilson.providers``): openai, ollama, scripted."""
