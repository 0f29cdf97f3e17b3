"""Wilson's Ollama plugin: ``wilson deploy ollama`` (GGUF + Modelfile, HTTP API client) and a
Go ``text/template`` evaluator that checks the Modelfile TEMPLATE against the HF chat template."""
