"""PTDiTTransformer3DModel: the Proxy-Tokenized Diffusion Transformer (arXiv 2409.04005) for V camera-conditioned
views, its two baselines at equal width/depth (``attention_type`` "full" and "spatial_temporal") and its two
efficient-attention peers ("mediator": DAM mediators, arXiv 2408.05710; "pswa": PiT pseudo-shifted windows, arXiv
2505.13219). How each variant lets information cross views is stated in its block's docstring (``blocks.py``).

Read top-down: config -> embeddings -> blocks -> final layer -> forward -> weight init.

Views are a set described by their cameras. There is no per-view index embedding and, by default, the
absolute sin-cos position table is 2D (rows and columns of a view); the paper encodes the frame index as a
third axis (``pos_embed="3d"`` reproduces that). With 2D positions and windows that never span views
(window_size[0] == 1), permuting the views together with their Plücker rays permutes the output, and the number
of views at inference may differ from training. With pf > 1 windows group consecutive views, so proxies and
the view-axis shift depend on view order.
"""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .attention import check_window, shifted_windows, text_mask, window_merge, window_partition
from .blocks import FullAttentionBlock, MediatorBlock, PSWABlock, PTDiTBlock, SpatialTemporalBlock
from .embeddings import CameraEmbed, CaptionProjection, PatchEmbed, TimestepEmbedder, sincos_pos_embed, unpatchify
from .mediator import MediatorAttention, check_mediator_counts, mediators_at, parse_mediator_schedule
from .presets import preset_config

ATTENTION_TYPES = ("proxy", "full", "spatial_temporal", "mediator", "pswa")
WINDOWED = ("proxy", "pswa")  # the variants that use window_size


PROMPT_PAD = 32  # compiled blocks see prompts padded to a multiple of this many tokens


def pad_prompt(embeddings: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt embeddings [B, T, C] and keep-mask [B, T] (None = keep all) padded with masked zero tokens to the next
    multiple of ``PROMPT_PAD``. Exact: masked tokens take no attention, and a prompt with no kept token stays
    empty (``text_mask``)."""
    B, T, _ = embeddings.shape
    if mask is None:
        mask = torch.ones(B, T, dtype=torch.long, device=embeddings.device)
    extra = -T % PROMPT_PAD
    if extra:
        embeddings = torch.nn.functional.pad(embeddings, (0, 0, 0, extra))
        mask = torch.nn.functional.pad(mask, (0, extra))
    return embeddings, mask


class PTDiTTransformer3DModel(ModelMixin, ConfigMixin):
    """Multiview denoiser: [B,V,C,H,W] latents + timestep + prompt embeddings + Plücker rays -> [B,V,C_out,H,W].

    Args:
        sample_size: latent size (H = W) the model is built for; sets the position-table base grid (other sizes
            interpolate positions) and, in presets, the window.
        in_channels: latent channels C.
        out_channels: output channels (default ``in_channels``; 2*C for a learned-sigma head).
        patch_size: p of the per-view p×p patch embedding.
        num_layers: number of blocks.
        num_attention_heads, attention_head_dim: hidden size D = heads * head_dim.
        window_size: (pf, ph, pw) window in tokens (views, rows, columns): the proxy/TCM window of ``proxy`` and
            the first channel group's window of ``pswa``; (ph, pw) must divide the token grid of sample_size.
        attention_type: "proxy" (PT-DiT), "full" (3D full attention), "spatial_temporal", "mediator" (DAM) or
            "pswa" (PiT).
        caption_channels: width Dt of the text-encoder features.
        max_views: largest number of views accepted at the input.
        mlp_ratio: FFN hidden size / D.
        pos_embed: "2d" (rows/columns only; views are a set) or "3d" (paper: view index as a third axis).
        norm_eps: LayerNorm epsilon.
        mediator_counts: the mediator counts n (perfect squares, at most the tokens per view of sample_size) one
            ``mediator`` model is trained over; each forward uses one of them (``num_mediators``, else the
            sampling schedule, else the largest). Other variants ignore it.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        sample_size: int = 16,
        in_channels: int = 4,
        out_channels: int | None = None,
        patch_size: int = 2,
        num_layers: int = 8,
        num_attention_heads: int = 4,
        attention_head_dim: int = 64,
        window_size: tuple[int, int, int] = (1, 2, 2),
        attention_type: str = "proxy",
        caption_channels: int = 384,
        max_views: int = 32,
        mlp_ratio: float = 4.0,
        pos_embed: str = "2d",
        norm_eps: float = 1e-6,
        mediator_counts: tuple[int, ...] = (4, 16),
    ):
        super().__init__()
        if attention_type not in ATTENTION_TYPES:
            raise ValueError(f"attention_type must be one of {ATTENTION_TYPES}, got {attention_type!r}")
        if pos_embed not in ("2d", "3d"):
            raise ValueError(f"pos_embed must be '2d' or '3d', got {pos_embed!r}")
        window = tuple(int(p) for p in window_size)
        if len(window) != 3 or min(window) < 1:
            raise ValueError(f"window_size must be three positive integers (pf, ph, pw), got {window_size!r}")
        if sample_size % patch_size:
            raise ValueError(f"sample_size {sample_size} is not divisible by patch_size {patch_size}")
        side = sample_size // patch_size  # tokens per side of a view at the base resolution
        if attention_type in WINDOWED and (side % window[1] or side % window[2]):
            raise ValueError(f"window_size {window} does not divide the {side}x{side} token grid of sample_size "
                             f"{sample_size} / patch_size {patch_size} (rows {side} % {window[1]}, columns {side} % "
                             f"{window[2]}); choose (ph, pw) that divide {side}")
        if attention_type == "pswa" and num_attention_heads % 2:
            raise ValueError(f"num_attention_heads must be even for attention_type 'pswa' (two channel groups), got "
                             f"{num_attention_heads}")
        counts = check_mediator_counts(mediator_counts, side) if attention_type == "mediator" else \
            tuple(int(c) for c in mediator_counts)
        self.window = window
        self.register_to_config(window_size=list(window), mediator_counts=list(counts))  # one form in config.json
        self.mediator_schedule = None  # sampling-time schedule of the mediator count (set_mediator_schedule)
        dim = num_attention_heads * attention_head_dim
        self.inner_dim = dim
        self.out_channels = out_channels or in_channels
        sincos_pos_embed(dim, (1, 1), (1, 1), None if pos_embed == "2d" else 1)  # validates dim for the table

        # embeddings
        self.patch_embed = PatchEmbed(in_channels, dim, patch_size)
        self.camera_embed = CameraEmbed(dim, patch_size)
        self.time_embed = TimestepEmbedder(dim)
        self.caption_projection = CaptionProjection(caption_channels, dim)

        # blocks
        shape = (dim, num_attention_heads, attention_head_dim)
        if attention_type == "proxy":
            blocks = [PTDiTBlock(*shape, window, mlp_ratio, norm_eps) for _ in range(num_layers)]
        elif attention_type == "full":
            blocks = [FullAttentionBlock(*shape, mlp_ratio, norm_eps) for _ in range(num_layers)]
        elif attention_type == "spatial_temporal":
            blocks = [SpatialTemporalBlock(*shape, mlp_ratio, norm_eps) for _ in range(num_layers)]
        elif attention_type == "mediator":
            blocks = [MediatorBlock(*shape, counts, side, mlp_ratio, norm_eps) for _ in range(num_layers)]
        else:
            blocks = [PSWABlock(*shape, window, mlp_ratio, norm_eps) for _ in range(num_layers)]
        self.transformer_blocks = nn.ModuleList(blocks)

        # final layer (PixArt-α): LN, shift/scale from t_emb + a learned 2×D table, linear to patches
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=norm_eps)
        self.scale_shift_table = nn.Parameter(torch.randn(2, dim) / dim**0.5)
        self.proj_out = nn.Linear(dim, patch_size * patch_size * self.out_channels)

        self.gradient_checkpointing = False
        self.blocks_compiled = False  # compile_blocks(); not a config field
        self.initialize_weights()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "PTDiTTransformer3DModel":
        """diffusers' loading, and also of a folder whose linear weights are stored in 8 bits (`mvgen export-model
        --dtype int8`, ``mvgen.models.int8``): dequantized to float32, then cast to ``torch_dtype``/``dtype``."""
        from pathlib import Path

        from .int8 import int8_file, load_int8_state

        folder = Path(pretrained_model_name_or_path) / (kwargs.get("subfolder") or "")
        path = int8_file(folder) if folder.is_dir() else None
        if path is None:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        model = cls.from_config(cls.load_config(folder))
        model.load_state_dict(load_int8_state(path))
        dtype = kwargs.get("torch_dtype") or kwargs.get("dtype")
        return (model.to(dtype) if dtype is not None else model).eval()

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "PTDiTTransformer3DModel":
        """A new (randomly initialised) model of preset ``name`` ("tiny", "S", "B", "L", "XL", see
        ``mvgen.models.presets.PRESETS``); ``overrides`` replace config fields (the window follows the preset's
        rule for the given sample_size/patch_size unless window_size is given)."""
        return cls(**preset_config(name, **overrides))

    # ------------------------------------------------------------------------------------ mediator counts

    def set_mediator_schedule(self, schedule=None) -> None:
        """Choose the mediator count used at each sampling step (``mediator`` only; not saved with the model).

        ``schedule``: None (the largest trained count), an int n, "even" (the counts spread evenly over the
        timesteps, fewest mediators at the highest noise), "t_min:n,..." (e.g. "700:4,0:16": 4 mediators while
        t >= 700, then 16) or a sequence of (t_min, n) pairs; t is the model's timestep (sigma*1000). Each n must
        be one of ``config.mediator_counts``. A ``num_mediators`` passed to ``forward`` overrides the schedule."""
        if schedule is not None and self.config.attention_type != "mediator":
            raise ValueError(f"a mediator schedule needs attention_type 'mediator', this model is "
                             f"{self.config.attention_type!r}")
        self.mediator_schedule = parse_mediator_schedule(schedule, self.config.mediator_counts)

    def num_mediators_at(self, timestep) -> int | None:
        """The mediator count a forward at ``timestep`` (a number, or a tensor whose largest value is used) runs
        with when no ``num_mediators`` is passed: the schedule's, else the largest trained count. None for the
        variants without mediators."""
        if self.config.attention_type != "mediator":
            return None
        if self.mediator_schedule is None:
            return max(self.config.mediator_counts)
        t = float(timestep.max()) if torch.is_tensor(timestep) else float(timestep)
        return mediators_at(self.mediator_schedule, t)

    def sample_num_mediators(self, generator: torch.Generator | None = None) -> int | None:
        """Training: one count drawn uniformly from ``config.mediator_counts`` (pass it to ``forward`` as
        ``num_mediators``, one draw per step). None for the variants without mediators."""
        if self.config.attention_type != "mediator":
            return None
        counts = self.config.mediator_counts
        return int(counts[int(torch.randint(len(counts), (1,), generator=generator))])

    # --------------------------------------------------------------------------------------- compilation

    def compile_blocks(self) -> None:
        """Compile every transformer block in place with ``torch.compile`` (inductor; on CPU it needs a C++
        compiler, see ``mvgen.device.check_compiler``): the blocks' elementwise work (norms, modulation, gates,
        casts, softmax) fuses into generated loops and, on CPU, window attention takes its fused form
        (``attention.window_attention_pairs``). Parameters, state dict and results are unchanged (within bf16
        rounding); the first call at each new input shape compiles (tens of seconds on two cores).

        For training, where one process runs thousands of steps of a few shapes. Graphs are compiled for fixed
        shapes (dynamic shapes compile once but ran 7 % slower, README), so the forward keeps the shapes few: the
        prompt is padded with masked tokens to a multiple of ``PROMPT_PAD`` (``pad_prompt``; exact) and the
        has-text gate is always a tensor; what remains is one graph per view count (and mediator count). The blocks
        share each graph; the recompile limit is raised to cover them all."""
        import torch._dynamo.config as dynamo_config

        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 64)
        for block in self.transformer_blocks:
            block.compile(dynamic=False)
        self.blocks_compiled = True

    # ------------------------------------------------------------------------------------------- forward

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        plucker: torch.Tensor | None = None,
        return_dict: bool = True,
        num_mediators: int | None = None,
    ):
        """
        Args:
            hidden_states: [B, V, C, H, W] noisy latents of V views.
            timestep: [B] (or a scalar / Python number) float; flow-matching convention sigma*1000 in [0, 1000].
            encoder_hidden_states: [B, T, caption_channels] prompt token features.
            encoder_attention_mask: [B, T], 1 = keep, 0 = padding (None = keep all). A sample with no kept token
                gets no text cross-attention.
            plucker: [B, V, 6, H, W] (or [1, V, 6, H, W]) Plücker rays at the latent resolution
                (``mvgen.cameras.Cameras.plucker(H, W)``). None = no camera conditioning.
            return_dict: return a ``Transformer2DModelOutput`` (else a 1-tuple).
            num_mediators: ``mediator`` only: the count n of mediators per view for this forward, one of
                ``config.mediator_counts`` (None: the sampling schedule at ``timestep``, else the largest count).

        Returns:
            ``.sample`` [B, V, out_channels, H, W].
        """
        if not torch.is_tensor(timestep):
            timestep = torch.tensor(timestep, dtype=torch.float32, device=hidden_states.device)
        B, V, H, W = self._check_inputs(hidden_states, timestep, encoder_hidden_states, encoder_attention_mask, plucker)
        p = self.config.patch_size
        grid = (V, H // p, W // p)  # token grid per sample
        num_mediators = self._resolve_mediators(num_mediators, timestep, grid)
        dtype = self.patch_embed.proj.weight.dtype
        if timestep.ndim == 0:
            timestep = timestep.expand(B)

        x = self.patch_embed(hidden_states.to(dtype))  # (B, V, h, w, D)
        if plucker is not None:
            x = x + self.camera_embed(plucker.expand(B, -1, -1, -1, -1), dtype)  # (B, V, h, w, D)
        x = x + self._pos_embed(grid, x.device, x.dtype)  # (B, V, h, w, D)
        t_emb, t6 = self.time_embed(timestep, dtype)  # (B, D), (B, 6, D)
        if self.blocks_compiled:  # few input shapes for the compiled blocks: see compile_blocks
            encoder_hidden_states, encoder_attention_mask = pad_prompt(encoder_hidden_states, encoder_attention_mask)
        ctx = self.caption_projection(encoder_hidden_states.to(dtype))  # (B, T, D)
        ctx_mask, has_text = text_mask(encoder_attention_mask)  # (B, 1, 1, T), (B, 1, 1)
        if self.blocks_compiled and has_text is None:
            has_text = torch.ones(B, 1, 1, device=x.device)  # one graph whether or not a prompt is empty

        x = self._to_tokens(x)  # (B, N, D)
        if self.config.attention_type == "proxy":
            extra = shifted_windows(grid, self.window, x.device)  # the blocks' variant-specific argument
        else:
            extra = num_mediators  # None except for mediator
        for block in self.transformer_blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x = self._gradient_checkpointing_func(block, x, t6, ctx, ctx_mask, has_text, grid, extra)
            else:
                x = block(x, t6, ctx, ctx_mask, has_text, grid, extra)  # (B, N, D)

        shift, scale = (self.scale_shift_table[None] + t_emb[:, None]).chunk(2, dim=1)  # (B, 1, D) each
        x = self.proj_out(self.norm_out(x) * (1 + scale) + shift)  # (B, N, p*p*C_out)
        x = self._from_tokens(x, grid)  # (B, V, h, w, p*p*C_out)
        out = unpatchify(x, p, self.out_channels)  # (B, V, C_out, H, W)
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)

    # ------------------------------------------------------------------------------------------- helpers

    def _check_inputs(self, hidden_states, timestep, encoder_hidden_states, encoder_attention_mask, plucker):
        cfg = self.config
        if hidden_states.ndim != 5:
            raise ValueError(f"hidden_states must be [B, V, C, H, W], got shape {list(hidden_states.shape)}")
        B, V, C, H, W = hidden_states.shape
        if C != cfg.in_channels:
            raise ValueError(f"hidden_states has {C} channels, the model expects in_channels={cfg.in_channels}")
        if H % cfg.patch_size or W % cfg.patch_size:
            raise ValueError(f"hidden_states latent size {H}x{W} is not divisible by patch_size {cfg.patch_size}")
        if not 1 <= V <= cfg.max_views:
            raise ValueError(f"hidden_states has {V} views; supported: 1..{cfg.max_views} (max_views)")
        if timestep.ndim > 1 or (timestep.ndim == 1 and timestep.shape[0] != B):
            raise ValueError(f"timestep must be a scalar or [B={B}], got shape {list(timestep.shape)}")
        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[0] != B \
                or encoder_hidden_states.shape[2] != cfg.caption_channels:
            raise ValueError(f"encoder_hidden_states must be [B={B}, T, caption_channels={cfg.caption_channels}], "
                             f"got {list(encoder_hidden_states.shape)}")
        if encoder_attention_mask is not None and tuple(encoder_attention_mask.shape) != tuple(encoder_hidden_states.shape[:2]):
            raise ValueError(f"encoder_attention_mask must be [B, T] = {list(encoder_hidden_states.shape[:2])}, "
                             f"got {list(encoder_attention_mask.shape)}")
        if plucker is not None and (plucker.ndim != 5 or plucker.shape[0] not in (1, B) or tuple(plucker.shape[1:]) != (V, 6, H, W)):
            raise ValueError(f"plucker must be [B={B} (or 1), V={V}, 6, H={H}, W={W}] (rays at the latent "
                             f"resolution), got {list(plucker.shape)}")
        if cfg.attention_type in WINDOWED:
            check_window((V, H // cfg.patch_size, W // cfg.patch_size), self.window)
        return B, V, H, W

    def _resolve_mediators(self, num_mediators, timestep, grid) -> int | None:
        """The mediator count of this forward (see ``forward``), validated; None for the other variants."""
        if self.config.attention_type != "mediator":
            if num_mediators is not None:
                raise ValueError(f"num_mediators is only for attention_type 'mediator', this model is "
                                 f"{self.config.attention_type!r}")
            return None
        counts = self.config.mediator_counts
        n = self.num_mediators_at(timestep) if num_mediators is None else num_mediators
        if n not in counts:
            raise ValueError(f"num_mediators {n!r} is not one of the counts this model was trained with "
                             f"(mediator_counts {list(counts)})")
        side = math.isqrt(n)
        if side > min(grid[1:]):
            raise ValueError(f"num_mediators {n} needs a {side}x{side} grid per view, larger than the {grid[1]}x"
                             f"{grid[2]} tokens of these latents")
        return int(n)

    def _pos_embed(self, grid, device, dtype) -> torch.Tensor:
        """[h, w, D] (2d) or [V, h, w, D] (3d) sin-cos table for the token grid."""
        base = self.config.sample_size // self.config.patch_size
        views = None if self.config.pos_embed == "2d" else grid[0]
        return sincos_pos_embed(self.inner_dim, grid[1:], (base, base), views, device=device).to(dtype=dtype)

    def _to_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """[B, V, h, w, D] -> [B, N, D]: window-major for ``proxy``, (v, y, x) order otherwise."""
        if self.config.attention_type == "proxy":
            return window_partition(x, self.window).flatten(1, 2)
        return x.flatten(1, 3)

    def _from_tokens(self, x: torch.Tensor, grid) -> torch.Tensor:
        """Inverse of ``_to_tokens``: [B, N, E] -> [B, V, h, w, E]."""
        if self.config.attention_type == "proxy":
            P = self.window[0] * self.window[1] * self.window[2]
            return window_merge(x.unflatten(1, (-1, P)), grid, self.window)
        return x.unflatten(1, grid)

    def initialize_weights(self) -> None:
        """All weight init in one place (DiT / PixArt-α): xavier-uniform linears with zero bias, patch embeddings
        as linears, N(0, 0.02) timestep/caption MLPs, and zeros for the output linears of GIIM, the shifted
        windows, the text cross-attention (PixArt-α) and the final layer, so each residual branch starts closed.
        Mediator position biases get a truncated N(0, 0.02) (DAM); depthwise convs (mediator, pswa) keep
        PyTorch's default init."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for conv in (self.patch_embed.proj, self.camera_embed.ray_proj):
            nn.init.xavier_uniform_(conv.weight.view(conv.weight.shape[0], -1))
            nn.init.zeros_(conv.bias)
        for linear in (self.time_embed.mlp[0], self.time_embed.mlp[2], self.time_embed.t_block[1],
                       self.caption_projection.linear_1, self.caption_projection.linear_2):
            nn.init.normal_(linear.weight, std=0.02)
        for module in self.modules():
            if isinstance(module, MediatorAttention):  # position biases: truncated N(0, 0.02) as in DAM
                nn.init.trunc_normal_(module.bias_gather, std=0.02)
                nn.init.trunc_normal_(module.bias_broadcast, std=0.02)
        zero = [self.proj_out] + [b.attn_text.to_out for b in self.transformer_blocks]
        for block in self.transformer_blocks:
            zero += block.zero_init_modules()
        for linear in zero:
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)
