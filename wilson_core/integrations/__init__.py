"""Capture for apps as they are: drop-in wrappers of the SDKs they already use.

    from wilson_core.integrations.openai import OpenAI, AsyncOpenAI   # or wrap(client)
    from wilson_core.integrations.anthropic import Anthropic, AsyncAnthropic
    from wilson_core.integrations.litellm import WilsonCallback

Each module imports its SDK (an optional extra: ``wilson-core[openai]``,
``[anthropic]``, ``[litellm]``); importing this package imports none of them.
"""
