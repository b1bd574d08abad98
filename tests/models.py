"""Small models for the core tests; also usable as ``--model tests/models.py:NAME``."""

from __future__ import annotations

import time

import torch
from torch import nn

DELAY_S = 0.03
DELAY_MS = DELAY_S * 1000


def spin(seconds: float) -> None:
    """Busy-waits: a planted delay that keeps the CPU busy (after a sleep the CPU is cold)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class SleepForward(nn.Module):
    """Sleeps in its forward; owned by whichever unit ran just before it."""

    def __init__(self, seconds: float = DELAY_S) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return x


class _SlowBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, seconds: float) -> torch.Tensor:
        ctx.seconds = seconds
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        time.sleep(ctx.seconds)
        return grad, None


class SleepBackward(nn.Module):
    def __init__(self, seconds: float = DELAY_S) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SlowBackward.apply(x, self.seconds)


def planted_delays() -> nn.Module:
    """Four Linear units: unit 2's forward sleeps, unit 3's backward sleeps."""
    return nn.Sequential(
        nn.Linear(16, 16), nn.ReLU(),
        nn.Linear(16, 16), SleepForward(), nn.ReLU(),
        nn.Linear(16, 16), SleepBackward(), nn.ReLU(),
        nn.Linear(16, 4),
    )


def mlp() -> nn.Module:
    """Saved bytes per unit, batch B, fp32: unit 1 = B·(8+16)·4, unit 2 = B·32·4, unit 3 = 0."""
    return nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)
    )


def convnet() -> nn.Module:
    """For 3×6×6 inputs: see tests/test_memory.py for the analytic saved bytes."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 6 * 6, 5),
    )


class Exploding(nn.Module):
    """Raises inside its forward on a chosen call, to test that profiling leaves no trace."""

    def __init__(self, fail_on_call: int) -> None:
        super().__init__()
        self.calls = 0
        self.fail_on_call = fail_on_call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("planted failure")
        return x


def failing_factory() -> nn.Module:
    raise ValueError("factory refuses")


def not_a_module() -> object:
    return 42


def explodes_in_training() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 8), Exploding(fail_on_call=4), nn.Linear(8, 2))


class TwoBranches(nn.Module):
    """Unit 2 and unit 3 both read unit 1's output; unit 2's output only feeds the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(8, 8)
        self.left = nn.Linear(8, 8)
        self.right = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(self.left(x) + self.right(x))


def two_branches() -> nn.Module:
    return TwoBranches()


class TwoHeads(nn.Module):
    """A trunk and two heads; the returned tuple is (b(h), c(h))."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 16)
        self.b = nn.Linear(16, 4)
        self.c = nn.Linear(16, 80)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.a(x))
        return self.b(h), self.c(h)


def two_heads() -> nn.Module:
    return TwoHeads()


class FeaturesAndLogits(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(8, 64)
        self.head = nn.Linear(64, 5)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = torch.relu(self.body(x))
        return {"features": h, "logits": self.head(h)}


def features_and_logits() -> nn.Module:
    return FeaturesAndLogits()


class AuxHead(nn.Module):
    """GoogLeNet-like: an auxiliary classifier in training, run between the trunk's units; the main
    loss ignores it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(8, 16)
        self.aux = nn.Linear(16, 3)
        self.body = nn.Linear(16, 16)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor):
        h = torch.relu(self.stem(x))
        aux = self.aux(torch.tanh(h)) if self.training else None  # as GoogLeNet's pools first
        logits = self.fc(torch.relu(self.body(h)))
        return (logits, aux) if self.training else logits


def aux_head() -> nn.Module:
    return AuxHead()


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class GPTBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, vocab)."""

    def __init__(self, vocab: int = 50, dim: int = 16, heads: int = 2, layers: int = 2, ctx: int = 8):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(ctx, dim))
        self.blocks = nn.Sequential(*[GPTBlock(dim, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tok(ids) + self.pos[: ids.shape[1]]
        return self.head(self.ln_f(self.blocks(x)))


def tiny_gpt() -> nn.Module:
    return TinyGPT()


def gpt_with_inputs_and_loss() -> dict:
    """The factory protocol: the model, an example batch of token ids and the training loss."""
    ids = torch.randint(0, 50, (2, 8))

    def loss(logits: torch.Tensor, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        (tokens,) = batch
        return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 50), tokens[:, 1:].reshape(-1))

    return {"model": TinyGPT(), "inputs": ids, "loss": loss}


class TwoInputs(nn.Module):
    """Image features and a class id, as a conditional model takes them."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.body = nn.Linear(8, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x) + self.embed(label)))


def two_inputs() -> object:
    from tlprof import ModelSpec

    return ModelSpec(TwoInputs(), (torch.randn(3, 8), torch.randint(0, 10, (3,))),
                     lambda out, batch: out.square().mean())


def encoder_layers() -> nn.Module:
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=True,
                                       dropout=0.0)
    encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    return nn.Sequential(nn.Linear(4, 16), encoder, nn.Flatten(), nn.Linear(16 * 6, 3))


def compiled_mlp() -> nn.Module:
    return torch.compile(mlp())
