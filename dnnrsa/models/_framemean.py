"""An image network run on every frame of a stimulus, its layers averaged over the frames."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

__all__ = ["FrameMean"]


class FrameMean(nn.Module):
    """An image network run on every frame; each recorded layer averaged over the frames.

    ``forward(frames)`` takes ``(batch, n_frames, 3, height, width)``, runs ``net`` on the
    ``batch * n_frames`` images and returns its output averaged over the frames. For each
    layer of ``modules`` (name -> dotted path of a submodule of ``net``), the output of
    that submodule, averaged over the frames of each stimulus as soon as it is computed,
    passes through the identity module ``frame_mean.<name>``: its output, one batch-first
    tensor per stimulus, is what dnnrsa records.

    Parameters
    ----------
    net : torch.nn.Module
        The library's image network; its weights are ``net``'s state dict.
    modules : mapping of str to str
        Layer name -> submodule of ``net``; each must run once per image batch.
    """

    def __init__(self, net: nn.Module, modules: Mapping[str, str]):
        super().__init__()
        self.net = net
        self.frame_mean = nn.ModuleDict({name: nn.Identity() for name in modules})
        self._n_frames = 1
        for name, path in modules.items():
            net.get_submodule(path).register_forward_hook(self._averager(name))

    def _averager(self, name: str):
        def hook(_module, _args, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            n = self._n_frames
            mean = output.reshape(output.shape[0] // n, n, *output.shape[1:]).mean(1)
            self.frame_mean[name](mean)

        return hook

    def forward(self, frames):
        if frames.dim() != 5:
            raise ValueError(
                "frames must have shape (batch, n_frames, 3, height, width); got "
                f"{tuple(frames.shape)}"
            )
        batch, n = frames.shape[:2]
        self._n_frames = n
        out = self.net(frames.reshape(batch * n, *frames.shape[2:]))
        return out.reshape(batch, n, *out.shape[1:]).mean(1)
