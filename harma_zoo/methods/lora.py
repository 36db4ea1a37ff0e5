"""LoRA in both towers, through Hugging Face peft.

Unlike the other methods, LoRA changes weights rather than branch outputs, so it does
not use the hook API: ``attach`` has peft replace the targeted modules of the
backbone in place with LoRA layers (``W x + (alpha / rank) * B A x``, B starting at
zero so an untrained LoRA computes what the backbone computes), and ``detach`` has
peft put the original module objects back, so the backbone's module types,
``state_dict`` keys and values are exactly what they were. The LoRA factors live
inside the backbone: after ``attach`` they are its only parameters with
``requires_grad=True``, which is how the trainer finds them, and
``backbone_parameter_kind`` reports them as "lora". The method module itself owns
no parameters.

Default targets, the same on every family: in every transformer block of the chosen
towers, the attention's query/key/value input projection (fused or not) and the MLP's
linear layers, but not the attention output projection. Each family names those modules
inside its blocks (``lora_qkv_modules`` and ``lora_mlp_modules`` of its class): OpenCLIP
``attn`` (its fused ``in_proj_weight``) + ``mlp.c_fc``/``mlp.c_proj``, timm ``attn.qkv`` +
``mlp.fc1``/``mlp.fc2``, HF CLIP/SigLIP ``q_proj``/``k_proj``/``v_proj`` + ``fc1``/``fc2``,
BLIP text ``query``/``key``/``value`` + ``intermediate.dense``/``output.dense``. A block is
the deepest module holding both of its insertion points, and only modules whose parameters
lie in the chosen towers count, so pooling heads, final projections and BLIP's unused
cross-attention are never adapted. All of q, k and v (not the original paper's q and v)
because timm and OpenCLIP fuse them into one weight; the attention output projection is
left out because OpenCLIP's blocks cannot adapt it through peft (below) and one recipe
should mean the same thing on every family. The MLP is included because it holds most of
a block's weights and carries the modality-specific features that retrieval tuning moves
(HarMA adapts the same branch).

``nn.MultiheadAttention`` (OpenCLIP's own blocks) needs care, because its forward
reads ``in_proj_weight`` and ``out_proj.weight`` directly in
``F.multi_head_attention_forward``: a LoRA layer wrapped around ``out_proj`` as a
plain Linear is never called and silently does nothing. peft 0.21.2 has a dedicated
``lora.MultiheadAttention`` layer that merges the deltas into both weights around
each forward, but it adds the ``out_proj`` delta twice (``W + 2 dW``; peft PR 3774,
still open) and its merge/unmerge round trip leaves the frozen weights off by
rounding, so it is not used. Instead the fused ``in_proj_weight`` is targeted as a
parameter (peft ``target_parameters``, ``lora.ParamWrapper``), which adds ``B A``
to it through a ``torch.nn.utils.parametrize`` parametrization for the duration of
each forward and re-registers the original parameter afterwards. peft refuses
dropout on parameter targets, so a ``dropout`` above zero applies to the linear
targets only. Naming the ``out_proj`` of an ``nn.MultiheadAttention`` in
``targets`` is an error rather than a silent no-op.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from peft import LoraConfig
from peft.tuners.lora import LoraModel
from torch import nn

from harma_zoo.backbones.base import DualEncoder
from harma_zoo.insertion import Attachment, block_names
from harma_zoo.methods.base import Method
from harma_zoo.registry import METHODS

ADAPTER_NAME = "default"
FUSED_QKV_PARAMETER = "in_proj_weight"


def _has_fused_qkv(module: nn.Module) -> bool:
    """An attention module applying a fused ``in_proj_weight`` itself (``nn.MultiheadAttention``, OpenCLIP's)."""
    return not isinstance(module, nn.Linear) and module._parameters.get(FUSED_QKV_PARAMETER) is not None


def _is_lora_name(name: str) -> bool:
    return any(part.startswith("lora_") for part in name.split("."))


@METHODS.register_module("lora")
class LoRA(Method):
    """Low-rank updates of the attention q/k/v projection and the MLP linears of both towers."""

    @dataclasses.dataclass
    class Options:
        rank: int = 8
        alpha: float = 16.0  # scaling is alpha / rank
        dropout: float = 0.0  # on the input of the linear targets (peft cannot apply it to a fused in_proj)
        # module-name suffixes (peft-style: the whole name or its end after a dot), matched inside the towers;
        # a fused attention module (nn.MultiheadAttention) adapts its in_proj_weight. None: the default above.
        targets: tuple[str, ...] | None = None
        towers: tuple[str, ...] = ("image", "text")

        def __post_init__(self) -> None:
            self.towers = tuple(self.towers)
            if not self.towers or set(self.towers) - {"image", "text"}:
                raise ValueError(f"towers may hold 'image' and 'text', got {list(self.towers)}")
            if self.targets is not None:
                self.targets = tuple(self.targets)
                if not self.targets:
                    raise ValueError("targets is empty; use None for the default targets")
            if self.rank <= 0:
                raise ValueError(f"rank must be positive, got {self.rank}")
            if not 0.0 <= self.dropout < 1.0:
                raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def __init__(self, backbone: DualEncoder, **options) -> None:
        super().__init__(backbone, **options)
        if self.options.targets is None:
            modules, parameters = self._default_targets(backbone)
        else:
            modules, parameters = self._named_targets(backbone, self.options.targets)
        if not modules and not parameters:
            raise ValueError(f"lora: nothing to adapt in the {' and '.join(self.options.towers)} tower(s)")
        self.module_targets: list[str] = modules  # linear layers, by name in the backbone
        self.parameter_targets: list[str] = parameters  # fused q/k/v weights, "module.in_proj_weight"
        self._tuners: list[LoraModel] = []
        self._parameter_order: dict[str, tuple[nn.Module, list[str]]] = {}

    # --- choosing targets -------------------------------------------------------------
    def _in_towers(self, backbone: DualEncoder, name: str, module: nn.Module) -> bool:
        towers = {backbone.tower_of(f"{name}.{p}") for p, _ in module.named_parameters()}
        return bool(towers) and towers <= set(self.options.towers)

    def _default_targets(self, backbone: DualEncoder) -> tuple[list[str], list[str]]:
        """The family's q/k/v and MLP modules in every block of the chosen towers; fused in_proj weights."""
        kinds = dict.fromkeys(backbone.lora_qkv_modules, "qkv") | dict.fromkeys(backbone.lora_mlp_modules, "mlp")
        if set(kinds.values()) != {"qkv", "mlp"}:
            raise ValueError(
                f"lora: {type(backbone).__name__} names no default targets (lora_qkv_modules, lora_mlp_modules); "
                "name the layers to adapt with the 'targets' option"
            )
        points = [point for point in backbone.insertion_points() if point.tower in self.options.towers]
        try:
            blocks = block_names(backbone, points)
        except ValueError as error:
            raise ValueError(f"lora: {error}") from error
        modules, parameters = [], []
        for (tower, block), root in blocks.items():
            found = {"qkv": 0, "mlp": 0}
            for sub, module in backbone.get_submodule(root).named_modules(prefix=root):
                kind = kinds.get(sub[len(root) + 1 :])
                if kind is None or not self._in_towers(backbone, sub, module):
                    continue  # e.g. BLIP's cross-attention, which contrastive text encoding never runs
                if _has_fused_qkv(module):
                    parameters.append(f"{sub}.{FUSED_QKV_PARAMETER}")
                elif isinstance(module, nn.Linear):
                    modules.append(sub)
                else:
                    continue  # the name of another block layout (OpenCLIP names its own blocks' and timm's)
                found[kind] += 1
            missing = [kind for kind, count in found.items() if not count]
            if missing:
                raise ValueError(
                    f"lora: found no {' or '.join(missing)} layer in {tower} block {block} ({root}); "
                    "name the layers to adapt with the 'targets' option"
                )
        return modules, parameters

    def _named_targets(self, backbone: DualEncoder, suffixes: Iterable[str]) -> tuple[list[str], list[str]]:
        suffixes = tuple(suffixes)
        modules, parameters, matched = [], [], set()
        for name, module in backbone.named_modules():
            hits = {s for s in suffixes if name == s or name.endswith("." + s)}
            if not hits or not self._in_towers(backbone, name, module):
                continue
            matched |= hits
            parent = backbone.get_submodule(name.rpartition(".")[0]) if "." in name else backbone
            if isinstance(parent, nn.MultiheadAttention) and module is parent.out_proj:
                raise ValueError(
                    f"lora: {name} is the out_proj of an nn.MultiheadAttention, whose forward reads "
                    "out_proj.weight directly and never calls out_proj, so LoRA there would do nothing; "
                    "target the attention module itself to adapt its fused q/k/v projection"
                )
            if isinstance(module, nn.MultiheadAttention) and not module._qkv_same_embed_dim:
                raise ValueError(f"lora: {name} has separate q/k/v weights; only a fused in_proj_weight is supported")
            if _has_fused_qkv(module):
                parameters.append(f"{name}.{FUSED_QKV_PARAMETER}")
            elif isinstance(module, nn.Linear):
                modules.append(name)
            else:
                raise ValueError(
                    f"lora: target {name} is a {type(module).__name__}; name nn.Linear layers or "
                    "attention modules with a fused in_proj_weight"
                )
        missing = sorted(set(suffixes) - matched)
        if missing:
            raise ValueError(f"lora: no module in the {' and '.join(self.options.towers)} tower(s) matches {missing}")
        return modules, parameters

    # --- attach / detach ----------------------------------------------------------------
    def _config(self, **targets) -> LoraConfig:
        o = self.options
        return LoraConfig(r=o.rank, lora_alpha=o.alpha, bias="none", **targets)

    def _inject(self, backbone: DualEncoder, config: LoraConfig) -> LoraModel:
        tuner = LoraModel(backbone, config, ADAPTER_NAME)
        # peft leaves its config on the model; nothing here reads it, and a second injection would share it
        if "peft_config" in backbone.__dict__:
            del backbone.peft_config
        return tuner

    def _attach(self, backbone: DualEncoder) -> Attachment | None:
        # the parametrization moves in_proj_weight to the end of its module's parameters: remember the order
        self._parameter_order = {}
        for target in self.parameter_targets:
            module = backbone.get_submodule(target.rpartition(".")[0])
            self._parameter_order[target] = (module, list(module._parameters))
        tuners = []
        try:
            if self.module_targets:
                pattern = "^(?:" + "|".join(re.escape(name) for name in self.module_targets) + ")$"
                config = self._config(target_modules=pattern, lora_dropout=self.options.dropout)
                tuners.append(self._inject(backbone, config))
                self._check_targeted(tuners[-1].targeted_module_names, self.module_targets)
            if self.parameter_targets:
                config = self._config(target_modules=None, target_parameters=list(self.parameter_targets))
                tuners.append(self._inject(backbone, config))
                self._check_targeted(tuners[-1].targeted_parameter_names, self.parameter_targets)
        except BaseException:
            for tuner in reversed(tuners):
                tuner.unload()
            self._restore_parameter_order()
            raise
        self._tuners = tuners
        return None

    @staticmethod
    def _check_targeted(targeted: list[str], wanted: list[str]) -> None:
        if sorted(targeted) != sorted(wanted):
            raise RuntimeError(f"lora: peft adapted {sorted(targeted)} instead of {sorted(wanted)}")

    def _detach(self, backbone: DualEncoder) -> None:
        for tuner in reversed(self._tuners):
            tuner.unload()  # puts each original module object back
        self._tuners = []
        self._restore_parameter_order()

    def _restore_parameter_order(self) -> None:
        for module, order in self._parameter_order.values():
            parameters = dict(module._parameters)
            module._parameters.clear()
            module._parameters.update((name, parameters[name]) for name in order)
        self._parameter_order = {}

    # --- reporting ----------------------------------------------------------------------
    def backbone_parameter_kind(self, name: str) -> str:
        return "lora" if _is_lora_name(name) else "backbone"
