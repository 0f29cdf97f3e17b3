"""Shared-prefix SFT batches: the tokens every row starts with are run once per batch.

An app's calls share their start: the system prompt, the tool schemas, the chat
template's header.  In a batch of ``B`` rows whose first ``P`` tokens are the same
and carry no loss, the plain forward runs those ``P`` tokens ``B`` times.  Here they
run once (batch 1, with gradients), their key/value cache is repeated for the ``B``
rows, and only the rows' own tokens run on top of it.  Causal attention makes the
result the same computation: the prefix never sees what follows it, and the
gradients of the repeated cache add up over the rows as they would.  The loss is
TRL's (summed token log-loss over the assistant tokens, divided by
``num_items_in_batch``), and logits are computed only where a label is.

It is used for training steps and for loss-only evaluation; packing, padding-free
batches and batches whose rows share fewer than :data:`MIN_PREFIX` loss-free tokens
take TRL's own path.
"""

from __future__ import annotations

import warnings
from typing import Any

#: Shorter shared starts are not worth a second forward call.
MIN_PREFIX = 16


def shared_prefix_length(input_ids: Any, labels: Any, attention_mask: Any | None) -> int:
    """How many leading tokens every row shares, none of them (nor the next) predicted or padded."""
    import torch  # noqa: TID251 - lazy import

    if input_ids.shape[0] < 2:
        return 0
    same = (input_ids == input_ids[:1]).all(dim=0)
    if attention_mask is not None:
        same &= (attention_mask == 1).all(dim=0)
    differs = torch.nonzero(~same)
    length = int(differs[0, 0]) if len(differs) else input_ids.shape[1]
    labelled = torch.nonzero((labels != -100).any(dim=0))
    if len(labelled):
        # Position p's logits predict label p (labels are shifted inside the loss): the
        # prefix must end before the first position whose label counts, less one.
        length = min(length, int(labelled[0, 0]) - 1)
    return max(length, 0)


def shared_prefix_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None,
                       average_over: int = 1) -> Any | None:
    """The SFT loss of ``inputs`` with the shared prefix run once; ``None`` where it does not apply."""
    import torch  # noqa: TID251 - lazy import

    input_ids, labels = inputs.get("input_ids"), inputs.get("labels")
    attention_mask = inputs.get("attention_mask")
    if input_ids is None or labels is None or input_ids.dim() != 2:
        return None
    if set(inputs) - {"input_ids", "labels", "attention_mask", "use_cache"}:
        return None  # position ids (padding-free), images, ...: TRL's path
    prefix = shared_prefix_length(input_ids, labels, attention_mask)
    if prefix < MIN_PREFIX or prefix >= input_ids.shape[1] - 1:
        return None
    rows = input_ids.shape[0]
    targets = labels[:, prefix + 1:]
    keep = torch.nonzero((targets != -100).any(dim=0))[:, 0]  # suffix positions whose logits matter
    mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers 5 renames past_key_values
        cache = model(input_ids=input_ids[:1, :prefix], use_cache=True, logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(rows)
        out = model(input_ids=input_ids[:, prefix:], attention_mask=mask, past_key_values=cache,
                    use_cache=True, logits_to_keep=keep)
    logits = out.logits.float()
    picked = targets[:, keep]
    loss_sum = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), picked.reshape(-1), ignore_index=-100, reduction="sum"
    )
    count = num_items_in_batch if num_items_in_batch is not None else (picked != -100).sum()
    return loss_sum / torch.as_tensor(count).clamp(min=1) * average_over


def shared_prefix_trainer(base: type) -> type:
    """``base`` (TRL's ``SFTTrainer``) with training steps that run shared prefixes once."""

    class SharedPrefixSFTTrainer(base):  # type: ignore[misc, valid-type]
        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            if self.model.training and not return_outputs:
                average = 1
                if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                    average = self.accelerator.num_processes
                loss = shared_prefix_loss(model, inputs, num_items_in_batch, average)
                if loss is not None:
                    return loss
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

        def prediction_step(self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool,
                            ignore_keys: list[str] | None = None) -> Any:
            # Eval loss only (no compute_metrics): the shared start runs once here too.  The loss
            # is the batch's mean token loss, as TRL's eval path gives it; TRL's eval-only
            # extras (entropy, token accuracy) are not computed for such batches.
            if prediction_loss_only:
                import torch  # noqa: TID251 - lazy import

                prepared = self._prepare_inputs(inputs)
                with torch.no_grad():
                    loss = shared_prefix_loss(model, prepared)
                if loss is not None:
                    return loss.detach(), None, None
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    return SharedPrefixSFTTrainer
