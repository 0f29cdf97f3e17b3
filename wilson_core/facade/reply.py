"""The :class:`~wilson_core.records.Reply` the app gets for a captured call."""

from __future__ import annotations

from wilson_core.records import Interaction, Reply


def reply_for(interaction: Interaction) -> Reply:
    """The :class:`Reply` the app gets for a captured call."""
    return Reply(
        content=interaction.response_content,
        tool_calls=interaction.tool_calls,
        input_tokens=interaction.input_tokens,
        output_tokens=interaction.output_tokens,
        total_tokens=interaction.total_tokens,
        duration_ms=interaction.duration_ms,
        interaction_id=interaction.id,
        run_id=interaction.run_id,
        model=interaction.model,
        provider=interaction.provider,
    )
