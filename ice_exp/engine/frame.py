"""One rendering per Jacobian pass, read by every criterion of a run.

Rendering the frame (image and toyface scene) is most of a pass; the criteria are small functions of it.
:class:`FramePasses` prepares every criterion once on the frame at u and gives the passes over any set of
their parts (``Part`` = (criterion key, part)):

- forward: one rendering per tangent batch and every criterion reads it, so a batched JVP costs one
  generator pass per tangent batch whatever the number of criteria;
- reverse: generator and criteria run forward once, kept as an autograd graph, and each criterion's rows
  are pulled back through its own branch only (a landmark row never walks back through an image it does
  not read, which a pullback of the parts concatenated would do, with zeros).

Both run at the generator's code (``Generator.code``, the narrowest point of decode: toyface's 20 factors)
when it is narrower than u, and are chained with C = d code / d u [H, D] (J = J_code C, Jt = J_code (Ct)):
the frame depends on u only through the code, so this is the same Jacobian to round-off, from H forward
passes instead of D. ``jacobian(parts, mode)`` picks the route for all parts at once: forward mode as soon
as the parts together have as many rows as the point has dimensions, reverse mode below.
"""
from __future__ import annotations

import itertools

import torch
from torch import Tensor

from ice_exp.criteria.terms import Terms
from ice_exp.engine.jacobian import Fn, basis_rows, check_mode, directional, jacobian
from ice_exp.engine.memory import in_chunks
from ice_exp.generators.base import Frame, Generator

Part = tuple[str, str]  # (criterion key of Terms.criteria, part)


class FramePasses:
    """The run's criteria prepared on the frame at u [D]; ``sizes`` gives every part's output size."""

    def __init__(self, generator: Generator, terms: Terms, u: Tensor, space: str) -> None:
        self.generator, self.terms, self.u, self.space = generator, terms, u, space
        with torch.no_grad():
            code = generator.code(u[None], space)[0]
            frame = generator.render_code(code[None])
            self.states = {key: criterion.prepare(frame) for key, criterion in terms.criteria.items()}
            self.sizes = {(key, p): o.shape[1] for key in terms.criteria
                          for p, o in sorted(terms.outputs(key, frame, self.states[key]).items())}
        # the point the passes run at, and C = d point / d u (None: the point is u itself)
        self.chain = jacobian(lambda v: generator.code(v[None], space)[0], u) if code.numel() < u.numel() else None
        self.point = u if self.chain is None else code
        self._graph: tuple[Tensor, dict[str, dict[str, Tensor]]] | None = None

    def parts(self, keys: list[str] | None = None) -> list[Part]:
        """Every used part of the criteria ``keys`` (default: all), criterion by criterion."""
        return [p for p in self.sizes if keys is None or p[0] in keys]

    def _render(self, x: Tensor) -> Frame:
        """The frame at a point x [P] (u or the code)."""
        return self.generator.decode(x[None], self.space) if self.chain is None else self.generator.render_code(x[None])

    def _outputs(self, frame: Frame, parts: list[Part]) -> Tensor:
        """The parts' outputs on ``frame`` concatenated [B, m]; only the criteria named in ``parts`` run."""
        out = {key: self.terms.outputs(key, frame, self.states[key]) for key in dict.fromkeys(k for k, _ in parts)}
        return torch.cat([out[key][p] for key, p in parts], 1)

    def fn(self, parts: list[Part]) -> Fn:
        """v [D] -> the parts' outputs [m] at v: one rendering per call (for passes in u itself: sketches)."""
        return lambda v: self._outputs(self.generator.decode(v[None], self.space), parts)[0]

    def _point_fn(self, parts: list[Part]) -> Fn:
        return lambda x: self._outputs(self._render(x), parts)[0]

    def jacobian(self, parts: list[Part], mode: str = "auto", chunk: int | None = None) -> tuple[Tensor, int]:
        """(J [m, D] of the parts concatenated, the passes spent) by ``mode`` (engine.jacobian's modes;
        ``auto`` falls back to reverse mode where an op has no forward-mode derivative)."""
        m, dim = sum(self.sizes[p] for p in parts), self.point.numel()
        j, passes = None, m
        if check_mode(mode) == "jvp" or (mode == "auto" and m >= dim):
            try:
                j, passes = jacobian(self._point_fn(parts), self.point, "jvp", chunk), dim
            except NotImplementedError:
                if mode == "jvp":
                    raise
        if j is None:
            j = self._reverse(parts, chunk, loop=mode == "loop")
        return (j if self.chain is None else j @ self.chain), passes

    def directional(self, parts: list[Part], tangents: Tensor) -> Tensor:
        """J t [K, m] for the tangents t [K, D]: one forward pass per chunk for all of them and all parts
        (J by reverse mode, then J t, where an op has no forward-mode derivative)."""
        try:
            at_point = tangents if self.chain is None else tangents @ self.chain.T
            return directional(self._point_fn(parts), self.point, at_point)
        except NotImplementedError:
            return tangents @ self.jacobian(parts, "vjp")[0].T

    def _reverse(self, parts: list[Part], chunk: int | None, loop: bool) -> Tensor:
        """J [m, P] at the point by reverse passes on one shared forward: batched pullbacks of basis rows
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
        """The point as a leaf and every criterion's outputs there, with their graph (built once, kept)."""
        if self._graph is None:
            leaf = self.point.detach().requires_grad_(True)
            with torch.enable_grad():
                frame = self._render(leaf)
                self._graph = leaf, {key: self.terms.outputs(key, frame, self.states[key]) for key in self.terms.criteria}
        return self._graph
