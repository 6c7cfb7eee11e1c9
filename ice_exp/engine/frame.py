"""One rendering per Jacobian pass, read by every criterion of a run.

Rendering the frame (image and toyface scene) is most of a pass; the criteria are small functions of it.
:class:`FramePasses` prepares every criterion once on the frame at u and gives the passes over any set of
their parts (``Part`` = (criterion key, part)):

- forward: ``fn(parts)`` renders once per call and lets each criterion read that frame, so a batched JVP
  costs one generator pass per tangent batch whatever the number of criteria;
- reverse: generator and criteria run forward once, kept as an autograd graph, and each criterion's rows
  are pulled back through its own branch only (a landmark row never walks back through an image it does
  not read, which a pullback of the parts concatenated would do, with zeros).

``jacobian(parts, mode)`` picks between them for all parts at once: forward mode as soon as the parts
together have at least D rows (D tangents then give every criterion's rows), reverse mode below.
"""
from __future__ import annotations

import itertools

import torch
from torch import Tensor

from ice_exp.engine.jacobian import Fn, basis_rows, check_mode, jacobian
from ice_exp.engine.memory import in_chunks
from ice_exp.generators.base import Generator
from ice_exp.terms import Terms

Part = tuple[str, str]  # (criterion key of Terms.criteria, part)


class FramePasses:
    """The run's criteria prepared on the frame at u [D]; ``sizes`` gives every part's output size."""

    def __init__(self, generator: Generator, terms: Terms, u: Tensor, space: str) -> None:
        self.generator, self.terms, self.u, self.space = generator, terms, u, space
        with torch.no_grad():
            frame = generator.decode(u[None], space)
            self.states = {key: criterion.prepare(frame) for key, criterion in terms.criteria.items()}
            self.sizes = {(key, p): o.shape[1] for key in terms.criteria
                          for p, o in sorted(terms.outputs(key, frame, self.states[key]).items())}
        self._graph: tuple[Tensor, dict[str, dict[str, Tensor]]] | None = None

    def parts(self, keys: list[str] | None = None) -> list[Part]:
        """Every used part of the criteria ``keys`` (default: all), criterion by criterion."""
        return [p for p in self.sizes if keys is None or p[0] in keys]

    def _outputs(self, frame, parts: list[Part]) -> Tensor:
        """The parts' outputs on ``frame`` concatenated [B, m]; only the criteria named in ``parts`` run."""
        out = {key: self.terms.outputs(key, frame, self.states[key]) for key in dict.fromkeys(k for k, _ in parts)}
        return torch.cat([out[key][p] for key, p in parts], 1)

    def fn(self, parts: list[Part]) -> Fn:
        """v [D] -> the parts' outputs [m] at v: one rendering per call."""
        return lambda v: self._outputs(self.generator.decode(v[None], self.space), parts)[0]

    def jacobian(self, parts: list[Part], mode: str = "auto", chunk: int | None = None) -> tuple[Tensor, int]:
        """(J [m, D] of the parts concatenated, the passes spent) by ``mode`` (engine.jacobian's modes;
        ``auto`` falls back to reverse mode where an op has no forward-mode derivative)."""
        m, dim = sum(self.sizes[p] for p in parts), self.u.numel()
        if check_mode(mode) == "jvp" or (mode == "auto" and m >= dim):
            try:
                return jacobian(self.fn(parts), self.u, "jvp", chunk), dim
            except NotImplementedError:
                if mode == "jvp":
                    raise
        return self._reverse(parts, chunk, loop=mode == "loop"), m

    def _reverse(self, parts: list[Part], chunk: int | None, loop: bool) -> Tensor:
        """J [m, D] of the parts by reverse passes on one shared forward: batched pullbacks of basis rows
        (``chunk`` rows at a time), or with ``loop`` one ``backward`` per row (the seed's method)."""
        leaf, outs = self._forward()
        blocks = []
        with torch.enable_grad():
            for key, group in itertools.groupby(parts, key=lambda p: p[0]):
                out = torch.cat([outs[key][p][0] for _, p in group])
                pull = lambda c, out=out: torch.autograd.grad(out, leaf, c, retain_graph=True)[0]  # noqa: E731
                if loop:
                    blocks.append(torch.stack([torch.autograd.grad(o, leaf, retain_graph=True)[0] for o in out]))
                else:
                    blocks.append(in_chunks(lambda i, j, out=out, pull=pull: torch.func.vmap(pull)(basis_rows(i, j, len(out), leaf)),
                                            len(out), leaf.device, chunk))
        return torch.cat(blocks)

    def _forward(self) -> tuple[Tensor, dict[str, dict[str, Tensor]]]:
        """The latent leaf and every criterion's outputs at u, with their graph (built once, kept)."""
        if self._graph is None:
            leaf = self.u.detach().requires_grad_(True)
            with torch.enable_grad():
                frame = self.generator.decode(leaf[None], self.space)
                self._graph = leaf, {key: self.terms.outputs(key, frame, self.states[key]) for key in self.terms.criteria}
        return self._graph
