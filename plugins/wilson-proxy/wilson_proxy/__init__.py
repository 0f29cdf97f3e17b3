"""wilson proxy: a recording reverse proxy for OpenAI, Anthropic and Ollama traffic.

Apps in any language switch to it by setting ``OPENAI_BASE_URL``,
``ANTHROPIC_BASE_URL`` or ``OLLAMA_HOST``; every chat call is relayed
unchanged and recorded into Wilson's store.  See :mod:`wilson_proxy.server` (and the modules it names).
"""

from importlib.metadata import version as _version

__version__ = _version("wilson-proxy")  # one source: the distribution's metadata (pyproject.toml)
