"""Full-batch L-BFGS for the linear classifiers, preconditioned by the features' Gram matrix.

The linear classifiers' objectives (:mod:`featbench.classifiers.torch_logreg`,
:mod:`featbench.classifiers.linear_svm`), divided by ``C n``, are

.. math::

    f(W, b) = \\tfrac{\\lambda}{2} \\lVert W \\rVert_F^2 + \\tfrac1n \\sum_i \\ell(x_i W + b, y_i),
    \\qquad \\lambda = \\tfrac{1}{C n},

whose Hessian in ``W`` is about :math:`\\lambda I + \\alpha X^\\top X / n` (``alpha`` the
loss's curvature). On thousands of correlated features (raw pixels, Coates et al.'s
k-means features) and at large ``C`` this matrix is badly conditioned and plain L-BFGS
takes thousands of iterations (2,505 for K = 1,600 k-means features at C = 0.1). As
preconditioned conjugate gradients and quasi-Newton methods do (Nocedal & Wright 2006,
sections 5.1 and 7.2), :func:`minimize` runs L-BFGS in the variables ``V = L^T W``, where
:math:`L L^\\top = \\lambda I + \\alpha \\Sigma` is the Cholesky factor of that model
Hessian (:math:`\\Sigma = X^\\top X / n`, one Gram matrix per copy of the features, shared
by every value of ``C``): the model Hessian becomes the identity, and the same fits take
46-71 iterations. The minimizer is unchanged (a change of variables), and so is the
stopping rule: the largest entry of the gradient in ``W`` and ``b`` (not in ``V``) at
most ``gtol``, checked at every evaluation.

Where the code departs from torch's L-BFGS alone: the objective's value is summed in
float64 (the gradient stays float32), so that the line search and the "no more
progress" test see changes smaller than float32's resolution of the loss; a fit that
stops on that test before the gradient rule says so with a
:class:`~sklearn.exceptions.ConvergenceWarning`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

#: L-BFGS's memory (pairs of steps and gradient changes kept)
HISTORY = 20
#: change of the objective between iterations (absolute: the objectives here are divided
#: by ``C n``, of order one), or largest entry of a step, below which L-BFGS stops
TOLERANCE_CHANGE = 1e-10

FunGrad = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class _Converged(Exception):
    """Raised by the objective when the gradient rule holds (ends L-BFGS there)."""


def start_point(init: tuple[np.ndarray, np.ndarray] | None, d: int, K: int,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The starting point ``W`` (d, K) and ``b`` (K,) in float32 on ``device``: zero, or
    ``init``'s ``(coef (K, d), intercept (K,))`` (a warm start)."""
    if init is None:
        return torch.zeros(d, K, device=device), torch.zeros(K, device=device)
    coef, intercept = (np.asarray(a, np.float32) for a in init)
    if coef.shape != (K, d) or intercept.shape != (K,):
        raise ValueError(f"init has shapes {coef.shape}, {intercept.shape}; expected "
                         f"({K}, {d}), ({K},)")
    return (torch.from_numpy(np.ascontiguousarray(coef.T)).to(device),
            torch.from_numpy(intercept.copy()).to(device))


def cholesky_factor(gram: torch.Tensor, lam: float, alpha: float) -> torch.Tensor:
    """Lower Cholesky factor of ``lam I + alpha gram`` (float32, on ``gram``'s device).

    Factored in float64 on the CPU (``lam`` can be 1e-6 of ``gram``'s largest
    eigenvalue, and not every device factors; by LAPACK in place, so that it holds one
    d x d float64 array), then rounded to float32: it only
    preconditions, so its rounding changes the path, not the minimizer or the rule.
    """
    from scipy.linalg import cholesky

    M = gram.detach().to("cpu", torch.float64).mul_(alpha)
    M.diagonal().add_(lam)
    # LAPACK's potrf in place: one d x d float64 array (2 GB at d = 16,000), not two
    L = torch.from_numpy(cholesky(M.numpy(), lower=True, overwrite_a=True,
                                  check_finite=False)).tril_()
    return L.to(gram.device, torch.float32)


def minimize(fun_grad: FunGrad, W: torch.Tensor, b: torch.Tensor, *, gtol: float,
             max_iter: int, factor: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Minimize a smooth convex ``f(W, b)`` with L-BFGS, optionally preconditioned.

    Parameters
    ----------
    fun_grad : callable
        ``(W, b) -> (f, df/dW, df/db)``; ``f`` a 0-d tensor (float64 for the line search's
        sake), the gradients float32 like ``W`` (d, K) and ``b`` (K,).
    W, b : Tensor
        Where to start.
    gtol : float
        Stop at the first evaluation where the largest entry of ``df/dW`` and ``df/db``
        is at most ``gtol``.
    max_iter : int
        Iteration limit (torch's L-BFGS also stops after ``1.25 max_iter`` evaluations).
    factor : Tensor of shape (d, d), optional
        Lower-triangular ``L`` (:func:`cholesky_factor`): L-BFGS runs in ``V = L^T W``
        (``W = L^{-T} V``, ``df/dV = L^{-1} df/dW``). None: in ``W`` itself.

    Returns
    -------
    W, b : Tensor
        The last point evaluated (the one that met the rule, when one did).
    n_iter : int
        Iterations; ``max_iter`` when the limit was reached (a
        :class:`~sklearn.exceptions.ConvergenceWarning` says so, as it does when the
        objective stopped changing first).
    """
    def to_w(V: torch.Tensor) -> torch.Tensor:
        return V if factor is None else torch.linalg.solve_triangular(factor.T, V, upper=True)

    if factor is None:
        V = W.detach().clone()
    else:
        V = (factor.T @ W.detach()).contiguous()
    V.requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([V, b], lr=1.0, max_iter=max_iter, history_size=HISTORY,
                            tolerance_grad=0.0, tolerance_change=TOLERANCE_CHANGE,
                            line_search_fn="strong_wolfe")
    largest = [float("inf")]

    @torch.no_grad()
    def closure() -> torch.Tensor:
        f, gW, gb = fun_grad(to_w(V), b)
        largest[0] = max(float(gW.abs().max()), float(gb.abs().max()) if gb.numel() else 0.0)
        if largest[0] <= gtol:
            raise _Converged
        V.grad = gW if factor is None else \
            torch.linalg.solve_triangular(factor, gW, upper=False).contiguous()
        b.grad = gb
        return f

    converged = True
    try:
        opt.step(closure)
        converged = False
    except _Converged:
        pass
    state = opt.state[opt._params[0]]
    n_iter = int(state.get("n_iter", 0))
    if not converged:
        if n_iter >= max_iter or state.get("func_evals", 0) >= int(max_iter * 1.25):
            n_iter = max(n_iter, max_iter)
            warnings.warn(f"L-BFGS reached max_iter={max_iter} with the largest gradient "
                          f"entry at {largest[0] / gtol:.3g} x its tolerance",
                          ConvergenceWarning, stacklevel=3)
        else:
            warnings.warn(f"L-BFGS stopped after {n_iter} iterations, the objective no "
                          f"longer changing, with the largest gradient entry at "
                          f"{largest[0] / gtol:.3g} x its tolerance", ConvergenceWarning,
                          stacklevel=3)
    with torch.no_grad():
        return to_w(V).detach(), b.detach(), n_iter
