"""A ReLU multi-layer perceptron: scikit-learn's ``MLPClassifier`` (adam) run in torch.

:class:`MLP` runs the algorithm of :class:`sklearn.neural_network.MLPClassifier` with
``solver="adam"`` and ``activation="relu"`` step for step: Glorot-uniform weights and
biases drawn from the same ``RandomState`` in the same order, the same
``train_test_split`` of the validation set (``early_stopping``; stratified for two
classes only, as scikit-learn's), the training indices reshuffled each epoch with
:func:`sklearn.utils.shuffle` from that ``RandomState``, mini-batches of ``min(200, n)``
in the same order, the softmax (or logistic, for two classes) cross-entropy with the L2
term ``alpha / 2 ||W||^2`` divided by the batch size, Adam with scikit-learn's bias
correction (``eps`` added to ``sqrt(v)``), and the same stopping rule, best-validation
bookkeeping and :class:`ConvergenceWarning`. In float64 its coefficients, losses and
validation scores equal scikit-learn's to rounding (about 1e-16 on the tests' problems,
which hold them to 1e-8); in float32 (the default) the same algorithm runs in half the
bytes, and the loop runs as a few torch kernels per batch (manual backward pass, Adam on
one flat parameter buffer, the validation accuracy from one forward pass per epoch)
instead of scikit-learn's NumPy code: 2.5x faster per epoch than scikit-learn's float64
fit on one core at 49,000 x 154 (``benchmarks/mlp_speed.py``). float32 rounding makes
its trajectory drift from scikit-learn's (and, in the last bits, from one thread count
to another): predictions agree on at least 98 % of points in the tests (99.97 %
observed), and the epoch early stopping picks can differ.

Differences from ``MLPClassifier``: only ReLU hidden units and the adam solver; no
``sample_weight``, multilabel targets, ``partial_fit`` or ``warm_start``; a fit on a
single class is refused; and Ctrl-C stops a fit (``KeyboardInterrupt`` is not caught
and turned into a half-trained model). ``solver="sklearn"`` fits ``MLPClassifier``
itself, bit for bit.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.neural_network._base import ACTIVATIONS
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, shuffle
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..runtime import tf32_mode
from .torch_logreg import SOLVERS, torch_or_sklearn

DTYPES = ("float32", "float64")

#: the fitted attributes copied from a scikit-learn fit (``solver="sklearn"``)
_FITTED = ("classes_", "coefs_", "intercepts_", "n_iter_", "t_", "loss_", "loss_curve_",
           "best_loss_", "validation_scores_", "best_validation_score_", "n_layers_",
           "n_outputs_", "out_activation_", "_label_binarizer")


class MLP(ClassifierMixin, BaseEstimator):
    """ReLU MLP classifier trained with Adam: ``MLPClassifier``'s algorithm in torch.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
        Units of each hidden layer.
    alpha : float, default=1e-4
        L2 penalty (added to the loss as ``alpha / 2 ||W||^2 / batch size``).
    batch_size : int or "auto", default="auto"
        "auto": ``min(200, n_samples)``.
    learning_rate_init : float, default=1e-3
        Adam's step size.
    max_iter : int, default=200
        Epochs at most.
    shuffle : bool, default=True
        Reshuffle the training samples each epoch.
    random_state : int, RandomState or None, default=None
        Seeds the initial weights, the validation split and the shuffles.
    tol : float, default=1e-4
        Smallest improvement of the validation accuracy (early stopping) or of the
        training loss that counts as one.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified for two classes only,
        as scikit-learn), stop when its accuracy has not improved by ``tol`` for more
        than ``n_iter_no_change`` epochs, and keep the coefficients of the best epoch.
        Without it, stop when the training loss has not improved by ``tol`` for more
        than ``n_iter_no_change`` epochs.
    validation_fraction : float, default=0.1
        Share of the data held out for early stopping.
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's parameters.
    n_iter_no_change : int, default=10
        Epochs without improvement before stopping.
    solver : {"auto", "sklearn", "torch"}, default="auto"
        "torch" (and "auto"): this module's loop on ``device``, in ``dtype``;
        "sklearn": :class:`~sklearn.neural_network.MLPClassifier` itself (CPU, in the
        input's dtype; ``dtype`` does not apply).
    dtype : {"float32", "float64"}, default="float32"
        Arithmetic of the torch solver (and the dtype of ``coefs_``).
    device : str, default="auto"
        "cpu", "cuda", "cuda:N", "mps", or "auto": CUDA when it is available and
        ``n_samples * n_features`` is at least
        :data:`featbench.runtime.AUTO_CUDA_MIN_SIZE`, else the CPU.

    Attributes
    ----------
    classes_ : ndarray
    coefs_, intercepts_ : list of ndarray
        Weights ``(fan_in, fan_out)`` and biases of each layer (the best epoch's with
        early stopping).
    n_iter_ : int
        Epochs run.
    loss_, loss_curve_ : float, list of float
        Training loss (mean over the epoch's batches, weighted by their sizes) of the
        last and of each epoch.
    best_loss_ : float or None
    validation_scores_ : list of float or None
        Validation accuracy after each epoch (early stopping), else None.
    best_validation_score_ : float or None
    t_ : int
        Training samples seen.
    n_layers_, n_outputs_, out_activation_ :
        As ``MLPClassifier``'s.
    solver_ : str
        "sklearn" or "torch": the solver that fitted.
    device_ : str
        The device it fitted on.

    References
    ----------
    .. [1] D. P. Kingma and J. Ba, "Adam: A method for stochastic optimization",
       ICLR 2015.
    .. [2] X. Glorot and Y. Bengio, "Understanding the difficulty of training deep
       feedforward neural networks", AISTATS 2010.
    """

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"),
                             Options(Real, {np.inf})],
        "solver": [StrOptions(set(SOLVERS))],
        "dtype": [StrOptions(set(DTYPES))],
        "device": [str],
    }

    def __init__(self, hidden_layer_sizes=(100,), alpha: float = 1e-4,
                 batch_size: int | str = "auto", learning_rate_init: float = 1e-3,
                 max_iter: int = 200, shuffle: bool = True, random_state=None,
                 tol: float = 1e-4, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-8, n_iter_no_change: int = 10,
                 solver: str = "auto", dtype: str = "float32", device: str = "auto") -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.solver = solver
        self.dtype = dtype
        self.device = device

    def _sklearn(self) -> MLPClassifier:
        """The ``MLPClassifier`` with this estimator's parameters (adam, relu)."""
        return MLPClassifier(
            hidden_layer_sizes=self.hidden_layer_sizes, activation="relu", solver="adam",
            alpha=self.alpha, batch_size=self.batch_size,
            learning_rate_init=self.learning_rate_init, max_iter=self.max_iter,
            shuffle=self.shuffle, random_state=self.random_state, tol=self.tol,
            early_stopping=self.early_stopping, validation_fraction=self.validation_fraction,
            beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
            n_iter_no_change=self.n_iter_no_change)

    def _placement(self, n_samples: int, n_features: int) -> tuple[str, torch.device]:
        """The solver and device of a fit on ``n_samples x n_features`` data."""
        return torch_or_sklearn(self.solver, self.device, n_samples * n_features)

    def fit(self, X, y) -> MLP:
        """Fit on features ``X`` and class labels ``y``."""
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        solver, device = self._placement(*X.shape)
        if solver == "sklearn":
            sk = self._sklearn().fit(X, y)
            for name in _FITTED:
                setattr(self, name, getattr(sk, name))
        else:
            self._fit_torch(X, y, device)
        self.solver_, self.device_ = solver, str(device)
        return self

    def _fit_torch(self, X: np.ndarray, y: np.ndarray, device: torch.device) -> None:
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if any(int(h) <= 0 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        np_dtype = np.dtype(self.dtype)
        t_dtype = torch.float32 if np_dtype == np.float32 else torch.float64
        lb = LabelBinarizer().fit(y)
        if len(lb.classes_) < 2:
            raise ValueError(f"MLP needs samples of at least 2 classes in the data, but the "
                             f"data contains only one class: {lb.classes_[0]!r}")
        Y = lb.transform(y).astype(bool)  # (n, 1) for two classes, one-hot for more
        self._label_binarizer, self.classes_ = lb, lb.classes_
        self.n_outputs_ = Y.shape[1]
        units = [X.shape[1], *map(int, hidden), self.n_outputs_]
        self.n_layers_ = len(units)
        self.out_activation_ = "softmax" if lb.y_type_ == "multiclass" else "logistic"
        rs = check_random_state(self.random_state)
        # MLPClassifier._init_coef: each layer's weights, then its biases, in float64
        init = []
        for fan_in, fan_out in zip(units[:-1], units[1:], strict=True):
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            init.append((rs.uniform(-bound, bound, (fan_in, fan_out)),
                         rs.uniform(-bound, bound, fan_out)))
        if self.early_stopping:
            # the split MLPClassifier draws next from the same RandomState (it depends on
            # the number of samples and the stratification only, not on X); it stratifies
            # only when the binarized targets have one column (two classes): a
            # multiclass validation set is a plain random subset
            idx_train, idx_val = train_test_split(
                np.arange(len(y)), random_state=rs, test_size=self.validation_fraction,
                stratify=Y if Y.shape[1] == 1 else None)
            if len(idx_val) < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
        else:
            idx_train, idx_val = np.arange(len(y)), None
        fit = _AdamFit(X, Y, idx_train, idx_val, init, self, np_dtype, t_dtype, device, rs)
        with tf32_mode(False):  # float32 means IEEE float32 on CUDA too
            fit.run()
        self.coefs_, self.intercepts_ = fit.best()
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data "
                             "may contain large values and need to be preprocessed.")

    def _forward(self, X) -> np.ndarray:
        """Output activations, as ``MLPClassifier._forward_pass_fast``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        activation = X
        for i in range(self.n_layers_ - 1):
            activation = activation @ self.coefs_[i]
            activation += self.intercepts_[i]
            if i != self.n_layers_ - 2:
                ACTIVATIONS["relu"](activation)
        ACTIVATIONS[self.out_activation_](activation)
        return activation

    def predict(self, X) -> np.ndarray:
        """Predicted class labels."""
        y_pred = self._forward(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        y_pred = self._forward(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)


class _AdamFit:
    """The training loop of one torch fit (``MLPClassifier._fit_stochastic``, adam).

    The weights and biases are views into one flat parameter buffer (and the gradients
    into one flat gradient buffer), so each Adam step is seven tensor operations
    whatever the number of layers; the backward pass is written out (ReLU layers,
    softmax or logistic output with its cross-entropy: the output delta is
    ``p - y``), with ``torch.addmm`` writing each gradient into its view.
    """

    def __init__(self, X, Y, idx_train, idx_val, init, est: MLP, np_dtype, t_dtype,
                 device: torch.device, rs: np.random.RandomState) -> None:
        self.est, self.rs, self.device, self.dtype = est, rs, device, t_dtype
        kw = {"dtype": t_dtype, "device": device}
        X = torch.from_numpy(np.ascontiguousarray(X, dtype=np_dtype)).to(device)
        Yt = torch.from_numpy(Y.astype(np_dtype)).to(device)
        tr = torch.from_numpy(idx_train).to(device)
        self.X_train, self.Y_train = X.index_select(0, tr), Yt.index_select(0, tr)
        self.X_val = self.y_val = None
        if idx_val is not None:
            va = torch.from_numpy(idx_val).to(device)
            self.X_val = X.index_select(0, va)
            yv = Yt.index_select(0, va)
            # class index of each validation sample (LabelBinarizer's inverse)
            self.y_val = yv.argmax(1) if Y.shape[1] > 1 else yv[:, 0].long()
        del X, Yt
        # all weights, then all biases (scikit-learn's coefs_ + intercepts_): the L2 term
        # is one dot product of the first n_coef entries
        arrays = [w for w, _ in init] + [b for _, b in init]
        self.n_coef = sum(w.size for w, _ in init)
        self.flat = torch.empty(sum(a.size for a in arrays), **kw)
        self.grad = torch.empty_like(self.flat)
        params, grads = self._views(self.flat, arrays), self._views(self.grad, arrays)
        for view, a in zip(params, arrays, strict=True):
            view.copy_(torch.from_numpy(a.astype(np_dtype)))
        n_layers = len(init)
        self.arrays = arrays
        self.W, self.b = params[:n_layers], params[n_layers:]
        self.gW, self.gb = grads[:n_layers], grads[n_layers:]
        self.best_flat = self.flat.clone()
        self.m = torch.zeros_like(self.flat)
        self.v = torch.zeros_like(self.flat)
        self.denom = torch.empty_like(self.flat)
        self.t = 0
        self.eps = float(np.finfo(np_dtype).eps)
        self.softmax = Y.shape[1] > 1

    def best(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The kept coefficients and intercepts (the best epoch's with early stopping)."""
        out = [v.cpu().numpy().copy() for v in self._views(self.best_flat, self.arrays)]
        return out[:len(self.W)], out[len(self.W):]

    @staticmethod
    def _views(flat: torch.Tensor, arrays: list[np.ndarray]) -> list[torch.Tensor]:
        """Consecutive views of ``flat`` shaped as ``arrays``."""
        views, start = [], 0
        for a in arrays:
            views.append(flat[start:start + a.size].view(a.shape))
            start += a.size
        return views

    def _forward(self, a: torch.Tensor) -> list[torch.Tensor]:
        """Activations of every layer for inputs ``a`` (output: probabilities)."""
        acts = [a]
        last = len(self.W) - 1
        for i, (w, b) in enumerate(zip(self.W, self.b, strict=True)):
            a = torch.addmm(b, a, w)
            if i < last:
                a.clamp_(min=0)
            acts.append(a)
        if self.softmax:
            acts[-1] = torch.softmax(a, dim=1)
        else:
            a.sigmoid_()
        return acts

    def _batch(self, xb: torch.Tensor, yb: torch.Tensor, loss_acc: torch.Tensor) -> None:
        """One mini-batch: loss (accumulated), gradients, Adam step."""
        est, n_b = self.est, xb.shape[0]
        acts = self._forward(xb)
        p = acts[-1]
        pc = p.clamp(self.eps, 1 - self.eps)
        # log loss (MLPClassifier's log_loss / binary_log_loss) summed over the batch,
        # plus the L2 term alpha/2 ||W||^2 (scikit-learn divides both by the batch size
        # and multiplies back by it when accumulating the epoch's loss)
        if self.softmax:
            nll = torch.log(pc).mul_(yb).sum()
        else:
            nll = (torch.log(pc).mul_(yb) + torch.log(1 - pc).mul_(1 - yb)).sum()
        w = self.flat[:self.n_coef]
        loss_acc.sub_(nll).add_(torch.dot(w, w), alpha=0.5 * est.alpha)
        # backward: delta = p - y at the output, then through each ReLU layer; scikit-learn
        # divides each gradient by the batch size, here delta is (the same up to rounding)
        delta = p.sub_(yb).div_(n_b)
        for i in range(len(self.W) - 1, -1, -1):
            torch.addmm(self.W[i], acts[i].T, delta, beta=est.alpha / n_b, out=self.gW[i])
            torch.sum(delta, 0, out=self.gb[i])
            if i > 0:
                delta = torch.ops.aten.threshold_backward(delta @ self.W[i].T, acts[i], 0)
        # Adam (AdamOptimizer._get_updates): eps is added to sqrt(v) before the bias
        # corrections, which scikit-learn folds into the learning rate
        self.t += 1
        b1, b2 = est.beta_1, est.beta_2
        self.m.mul_(b1).add_(self.grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(self.grad, self.grad, value=1 - b2)
        lr = est.learning_rate_init * np.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        torch.sqrt(self.v, out=self.denom).add_(est.epsilon)
        self.flat.addcdiv_(self.m, self.denom, value=-float(lr))

    def _val_score(self) -> float:
        """Accuracy on the validation set (``MLPClassifier._score``)."""
        p = self._forward(self.X_val)[-1]
        pred = p.argmax(1) if self.softmax else (p[:, 0] > 0.5).long()
        return float((pred == self.y_val).sum().item()) / len(self.y_val)

    @torch.no_grad()
    def run(self) -> None:
        est = self.est
        n = self.X_train.shape[0]
        if est.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if est.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It "
                              "is going to be clipped", stacklevel=4)
            batch_size = int(np.clip(est.batch_size, 1, n))
        early = bool(est.early_stopping)
        est.n_iter_, est.t_, est.loss_curve_ = 0, 0, []
        no_improvement = 0
        if early:
            est.validation_scores_, est.best_validation_score_, est.best_loss_ = [], -np.inf, None
        else:
            est.validation_scores_, est.best_validation_score_, est.best_loss_ = None, None, np.inf
        sample_idx = np.arange(n, dtype=int)
        loss_acc = torch.zeros((), dtype=torch.float64, device=self.device)
        for _ in range(est.max_iter):
            if est.shuffle:
                sample_idx = shuffle(sample_idx, random_state=self.rs)
                perm = torch.from_numpy(sample_idx).to(self.device)
                X_ep, Y_ep = self.X_train.index_select(0, perm), self.Y_train.index_select(0, perm)
            else:
                X_ep, Y_ep = self.X_train, self.Y_train
            loss_acc.zero_()
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                self._batch(X_ep[start:stop], Y_ep[start:stop], loss_acc)
            est.n_iter_ += 1
            est.loss_ = loss_acc.item() / n
            est.t_ += n
            est.loss_curve_.append(est.loss_)
            if early:
                score = self._val_score()
                est.validation_scores_.append(score)
                if score < est.best_validation_score_ + est.tol:
                    no_improvement += 1
                else:
                    no_improvement = 0
                if score > est.best_validation_score_:
                    est.best_validation_score_ = score
                    self.best_flat.copy_(self.flat)
            else:
                if est.loss_curve_[-1] > est.best_loss_ - est.tol:
                    no_improvement += 1
                else:
                    no_improvement = 0
                if est.loss_curve_[-1] < est.best_loss_:
                    est.best_loss_ = est.loss_curve_[-1]
            if no_improvement > est.n_iter_no_change:
                break
            if est.n_iter_ == est.max_iter:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({est.max_iter}) reached and "
                    f"the optimization hasn't converged yet.", ConvergenceWarning,
                    stacklevel=4)
        if not early:
            self.best_flat.copy_(self.flat)
