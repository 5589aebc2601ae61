"""Exact LightGBM SHAP contributions (``pred_contrib``) for small trees, by table lookup.

LightGBM's ``booster.predict(x, pred_contrib=True)`` runs path-dependent TreeSHAP for every row
and tree. In a tree with ``m`` internal nodes, a row's contribution vector depends only on the
row's ``m`` decisions (left / right at each node), so it takes at most ``2**m`` distinct values.
:class:`TreeContributions` computes those vectors once per tree (the exact Shapley values of the
game TreeSHAP explains, ``v(S)`` = cover-weighted expectation of the tree given the features in
``S``), and per row only evaluates the decisions (vectorised numpy, columns of a chunk of rows),
forms an index and looks the vectors up. The values are those of ``pred_contrib`` up to
floating-point rounding (the sum is taken in another order: ~1e-15 of the scores' scale).

Index space. Each tree is "tabled" over components: one bit per numerical split (the split's
comparison), and for each categorical feature either its category cell (code ``0..K-1``, or
``K`` for anything no split of the model names: NaN, negative, unseen) or one bit per split.
Trees of the same class that share features are merged into one group with one table over the
union of their components, as long as the table stays small: the lookup (a gather per output
feature) is the costly step, so fewer groups means fewer gathers.

Decision rules replicated from LightGBM (``include/LightGBM/tree.h``, v4.x):

- Input: a pandas frame is converted by LightGBM's own ``_data_from_pandas`` (categories set to
  the booster's ``pandas_categorical``, codes, ``-1`` -> NaN, common dtype at least float32); a
  numpy array that is not float32/float64 is cast to float32, as ``Booster.predict`` does.
- Dense rows keep only values with ``|x| > kZeroThreshold`` or NaN (``c_api.cpp``,
  ``RowPairFunctionFromDenseMatrix``): ``|x| <= kZeroThreshold`` (``1e-35f`` as a double) is
  read as exactly 0.0 before any decision.
- ``NumericalDecision``: NaN becomes 0.0 unless ``missing_type`` is NaN; then if ``missing_type``
  is Zero and the value is zero (``IsZero``: ``|x| <= kZeroThreshold``), or ``missing_type`` is NaN
  and the value is NaN, go to the ``default_left`` side; otherwise left iff ``x <= threshold``.
- ``CategoricalDecision``: NaN goes right; else ``int(x)`` (C truncation toward zero, so
  ``-0.5`` is category 0) < 0 goes right; else left iff the category is in the split's set
  (a bitset: categories beyond it go right). ``missing_type`` plays no part.
- TreeSHAP's covers are the data counts (``internal_count`` / ``leaf_count``), its expected
  value per tree is ``sum(leaf_count / root_count * leaf_value)`` in leaf order, and
  ``pred_contrib`` never averages (even for ``boosting=rf``).

Trees with more than ``max_nodes`` internal nodes (or a zero count, or linear leaves) are not
tabled: their iterations are computed by LightGBM's own ``pred_contrib`` (``start_iteration`` /
``num_iteration`` runs of consecutive iterations) and added, so the result is exact for any
model. If no tree is tabled, the call is exactly ``booster.predict(x, pred_contrib=True)``.
Unlike ``Booster.predict``, zero rows give an empty (0 x width) array instead of an error.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from lightgbm.basic import _data_from_pandas

#: LightGBM's ``kZeroThreshold`` (``meta.h``: ``const double kZeroThreshold = 1e-35f;``): the
#: float literal widened to double, not 1e-35 itself.
K_ZERO_THRESHOLD = float(np.float32(1e-35))

# Numerical split encodings: one bit per split, computed with one or two comparisons. NaN compares
# False, so the choice of "<=" or ">" puts NaN on the side LightGBM sends it to (see _numeric_op).
_LE, _GT, _LE_NZ, _GT_NZ = "le", "gt", "le_nz", "gt_nz"
_BIT_MEANS_LEFT = {_LE: True, _LE_NZ: True, _GT: False, _GT_NZ: False}

# Rough costs (microseconds per 65,536 rows, measured) of the per-chunk work of a group, used to
# decide merges: a bit (comparison + or), a cell (multiply + add), a categorical bit (lookup), the
# group (widening its index), an output feature (np.take + add: the costly step).
_COST_BIT, _COST_BIT_NZ, _COST_CELL, _COST_CATBIT, _COST_GROUP, _COST_OUTPUT = 16, 25, 8, 60, 15, 70


# ------------------------------------------------------------------------------------------------
# Trees
# ------------------------------------------------------------------------------------------------
@dataclass
class _Node:
    feature: int
    categorical: bool
    threshold: float  # numerical splits
    categories: frozenset[int]  # categorical splits
    missing_type: str
    default_left: bool
    count: int
    child_counts: tuple[int, int]  # data_count(left), data_count(right)


@dataclass
class _Leaf:
    value: float
    count: int
    path: list[tuple[int, bool]]  # (internal node, went left)


@dataclass
class _Tree:
    index: int
    nodes: list[_Node]
    leaves: list[_Leaf]  # in leaf_index order
    expected_value: float = 0.0
    tabled: bool = False
    features: list[int] = field(default_factory=list)  # distinct split features, sorted
    table: np.ndarray | None = None  # (2**len(nodes), len(features)); pattern bit j: node j left
    components: list[tuple] = field(default_factory=list)


def _model_thresholds(model: str) -> list[list[float]]:
    """Per tree, the ``threshold=`` line of the model text, by split index.

    The JSON dump clips thresholds to +-1e300 (``Common::AvoidInf``), but LightGBM does split at
    +inf (e.g. "NaN right, everything else left"): x = +inf goes left there, and right of 1e300.
    The model text keeps "inf" (and 17 significant digits, like the dump).
    """
    out = []
    for block in model.split("\nTree=")[1:]:
        line = next((ln for ln in block.splitlines() if ln.startswith("threshold=")), "threshold=")
        out.append([float(v) for v in line[len("threshold=") :].split()])
    return out


def _parse_tree(info: dict[str, Any], model_thresholds: list[float]) -> _Tree:
    """Internal nodes (depth-first) and leaves (by leaf_index) of one ``dump_model`` tree;
    numerical thresholds from the model text (see _model_thresholds)."""
    nodes: list[_Node] = []
    leaves: dict[int, _Leaf] = {}

    def count(node: dict[str, Any]) -> int:
        return int(node["internal_count"] if "split_index" in node else node["leaf_count"])

    def walk(node: dict[str, Any], path: list[tuple[int, bool]]) -> None:
        if "split_index" not in node:
            leaves[int(node.get("leaf_index", 0))] = _Leaf(
                float(node["leaf_value"]), int(node.get("leaf_count", 0)), path
            )
            return
        categorical = node["decision_type"] == "=="
        threshold = node["threshold"]
        if not categorical:
            exact = model_thresholds[int(node["split_index"])]
            if exact != float(threshold) and abs(float(threshold)) < 1e300:
                raise ValueError(f"threshold {threshold} in the dump, {exact} in the model text")
            threshold = exact
        j = len(nodes)
        nodes.append(
            _Node(
                feature=int(node["split_feature"]),
                categorical=categorical,
                threshold=math.nan if categorical else float(threshold),
                categories=(
                    frozenset(int(c) for c in str(threshold).split("||")) if categorical
                    else frozenset()
                ),
                missing_type=str(node["missing_type"]),
                default_left=bool(node["default_left"]),
                count=count(node),
                child_counts=(count(node["left_child"]), count(node["right_child"])),
            )
        )  # fmt: skip
        walk(node["left_child"], [*path, (j, True)])
        walk(node["right_child"], [*path, (j, False)])

    walk(info["tree_structure"], [])
    return _Tree(int(info["tree_index"]), nodes, [leaves[i] for i in sorted(leaves)])


def _expected_value(tree: _Tree) -> float:
    """``Tree::ExpectedValue``: the count-weighted mean leaf value, summed in leaf order."""
    if len(tree.leaves) == 1:
        return tree.leaves[0].value
    total = float(tree.nodes[0].count)
    value = 0.0
    for leaf in tree.leaves:
        value += (leaf.count / total) * leaf.value
    return value


def _pattern_table(tree: _Tree) -> np.ndarray:
    """SHAP values of the tree for every decision pattern: (2**nodes, distinct features).

    Pattern bit j set = node j sends the row left. For a leaf with value ``w``, the game TreeSHAP
    explains is ``v(S) = w * prod_{f in S} o_f * prod_{f not in S} z_f`` over the distinct
    features of its path, where ``o_f`` = 1 if the row follows the path at all of f's nodes and
    ``z_f`` = product of the covers' fractions (child count / node count) at f's nodes; the
    tree's game is the sum over leaves. Its Shapley values have the closed form below (the one
    TreeSHAP's path weights evaluate), computed by enumerating subsets of the path's features.
    """
    k = len(tree.nodes)
    patterns = np.arange(1 << k)
    left = [((patterns >> j) & 1).astype(bool) for j in range(k)]
    column = {f: i for i, f in enumerate(tree.features)}
    phi = np.zeros((1 << k, len(tree.features)))
    for leaf in tree.leaves:
        follows: dict[int, np.ndarray] = {}
        fraction: dict[int, float] = {}
        for j, went_left in leaf.path:
            node = tree.nodes[j]
            f = node.feature
            on_path = left[j] if went_left else ~left[j]
            ratio = node.child_counts[0 if went_left else 1] / node.count
            if f in follows:  # TreeSHAP unwinds the earlier split on f and merges the fractions
                follows[f] = follows[f] & on_path
                fraction[f] = ratio * fraction[f]
            else:
                follows[f] = on_path
                fraction[f] = ratio
        feats = list(follows)
        d = len(feats)
        for f in feats:
            others = [g for g in feats if g != f]
            weight = np.zeros(1 << k)
            for size in range(d):
                coef = math.factorial(size) * math.factorial(d - 1 - size) / math.factorial(d)
                for subset in itertools.combinations(others, size):
                    term = np.full(1 << k, coef)
                    for g in others:
                        term = term * follows[g] if g in subset else term * fraction[g]
                    weight += term
            phi[:, column[f]] += leaf.value * (follows[f] - fraction[f]) * weight
    return phi


def _numeric_op(node: _Node) -> str:
    """The comparison whose result, for every input, is LightGBM's decision at this node.

    ``x > t`` is False for NaN (so NaN goes left) and ``x <= t`` is False for NaN (NaN goes
    right); "_nz" adds ``x != 0`` for the Zero missing type when 0 must go against its natural
    side. Values are already |x| <= kZeroThreshold -> 0 (dense-row rule).
    """
    t = node.threshold
    zero_natural_left = 0.0 <= t
    if node.missing_type == "NaN":  # NaN -> default side; 0 compared normally
        return _GT if node.default_left else _LE
    if node.missing_type == "Zero":  # NaN -> 0.0, then 0 -> default side
        if node.default_left:
            return _GT if zero_natural_left else _GT_NZ
        return _LE if not zero_natural_left else _LE_NZ
    # missing_type None: NaN -> 0.0, compared normally
    return _GT if zero_natural_left else _LE


# ------------------------------------------------------------------------------------------------
# Groups: trees sharing one lookup table
# ------------------------------------------------------------------------------------------------
@dataclass
class _Group:
    cls: int
    components: list[tuple] = field(
        default_factory=list
    )  # ("bit", f, op, t) / ("cell", f) / ("catbit", f, cats)
    radices: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)  # feature indices (within the class block)
    trees: list[_Tree] = field(default_factory=list)
    size: int = 1
    # filled by _finish
    rows: np.ndarray | None = None  # output rows of the accumulator
    table: np.ndarray | None = None  # (len(outputs), size)
    bits: list[tuple] = field(default_factory=list)  # (component, shift, catbit lut or None)
    cells: list[tuple] = field(default_factory=list)  # (feature, stride)


def _component_cost(component: tuple) -> int:
    if component[0] == "bit":
        return _COST_BIT_NZ if component[2] in (_LE_NZ, _GT_NZ) else _COST_BIT
    return _COST_CELL if component[0] == "cell" else _COST_CATBIT


def _tree_components(tree: _Tree, radix: dict[int, int], max_table: int) -> list[tuple] | None:
    """The tree's index components: numerical splits as bits, categorical features as cells
    (switched to one bit per split, largest radix first, while the table would be too large)."""
    bits = {
        ("bit", n.feature, _numeric_op(n), n.threshold) for n in tree.nodes if not n.categorical
    }
    cat_nodes: dict[int, list[_Node]] = {}
    for n in tree.nodes:
        if n.categorical:
            cat_nodes.setdefault(n.feature, []).append(n)
    as_cell = set(cat_nodes)
    catbits: set[tuple] = set()

    def size() -> int:
        return (1 << (len(bits) + len(catbits))) * math.prod(radix[f] for f in as_cell)

    while size() > max_table and as_cell:
        f = max(as_cell, key=lambda g: radix[g] / (1 << len(cat_nodes[g])))
        as_cell.discard(f)
        catbits |= {("catbit", f, n.categories) for n in cat_nodes[f]}
    if size() > max_table:
        return None
    return sorted(bits, key=str) + sorted(catbits, key=str) + [("cell", f) for f in sorted(as_cell)]


def _radix(component: tuple, radix: dict[int, int]) -> int:
    return radix[component[1]] if component[0] == "cell" else 2


def _plan_groups(
    trees: Sequence[_Tree], n_classes: int, radix: dict[int, int], max_table: int
) -> list[_Group]:
    """Greedy merge: each tree joins the group (same class) where it adds the least work, if that
    is less than the work of a group of its own and the group's table stays within max_table."""
    groups: list[_Group] = []
    by_feature: dict[tuple[int, int], list[_Group]] = {}
    for tree in trees:
        cls = tree.index % n_classes
        own = (
            _COST_GROUP
            + sum(map(_component_cost, tree.components))
            + _COST_OUTPUT * len(tree.features)
        )
        best, best_gain = None, 0.0
        seen: set[int] = set()
        for f in tree.features:
            for g in by_feature.get((cls, f), ()):
                if id(g) in seen:
                    continue
                seen.add(id(g))
                new = [c for c in tree.components if c not in g.components]
                size = g.size * math.prod(_radix(c, radix) for c in new)
                if size > max_table:
                    continue
                extra = sum(map(_component_cost, new)) + _COST_OUTPUT * len(
                    set(tree.features) - set(g.outputs)
                )
                if own - extra > best_gain:
                    best, best_gain = g, own - extra
        if best is None:
            best = _Group(cls)
            groups.append(best)
        for c in tree.components:
            if c not in best.components:
                best.components.append(c)
                best.radices.append(_radix(c, radix))
                best.size *= best.radices[-1]
        for f in tree.features:
            if f not in best.outputs:
                best.outputs.append(f)
                by_feature.setdefault((cls, f), []).append(best)
        best.trees.append(tree)
    return groups


def _finish(group: _Group, n_features: int, radix: dict[int, int]) -> None:
    """Lay out the group's index (bits low, cells high) and fill its table."""
    bit_comps = [c for c in group.components if c[0] != "cell"]
    cell_comps = [c for c in group.components if c[0] == "cell"]
    group.components = bit_comps + cell_comps
    group.bits = [
        (c, j, np.array([i in c[2] for i in range(radix[c[1]])]) if c[0] == "catbit" else None)
        for j, c in enumerate(bit_comps)
    ]
    stride = 1 << len(bit_comps)
    for c in cell_comps:
        group.cells.append((c[1], stride))
        stride *= radix[c[1]]
    group.size = stride
    index = np.arange(stride)
    digit: dict[tuple, np.ndarray] = {c: (index >> j) & 1 for j, c in enumerate(bit_comps)}
    for (f, s), c in zip(group.cells, cell_comps, strict=True):
        digit[c] = (index // s) % radix[f]
    column = {f: i for i, f in enumerate(group.outputs)}
    table = np.zeros((len(group.outputs), stride))
    for tree in group.trees:
        pattern = np.zeros(stride, dtype=np.intp)
        for j, node in enumerate(tree.nodes):
            if not node.categorical:
                op = _numeric_op(node)
                goes_left = digit[("bit", node.feature, op, node.threshold)] == int(
                    _BIT_MEANS_LEFT[op]
                )
            elif ("cell", node.feature) in tree.components:
                lut = np.array([i in node.categories for i in range(radix[node.feature])])
                goes_left = lut[digit[("cell", node.feature)]]
            else:
                goes_left = digit[("catbit", node.feature, node.categories)] == 1
            pattern |= goes_left.astype(np.intp) << j
        contrib = tree.table[pattern]  # (size, tree features)
        for i, f in enumerate(tree.features):
            table[column[f]] += contrib[:, i]
    group.table = table
    group.rows = np.array([group.cls * (n_features + 1) + f for f in group.outputs], dtype=np.intp)


# ------------------------------------------------------------------------------------------------
# The public class
# ------------------------------------------------------------------------------------------------
@dataclass
class _Plan:
    groups: list[_Group]
    fallback: list[tuple[int, int]]  # (start_iteration, num_iteration) runs left to LightGBM
    expected: np.ndarray  # (n_classes,) expected value of the tabled trees
    features: list[int]  # numerical features whose columns the groups read
    cat_features: list[int]  # categorical features whose cells the groups read


class TreeContributions:
    """``booster.predict(x, pred_contrib=True)``, computed from per-tree lookup tables.

    Built once per booster (its trees are read from ``dump_model``; the booster must not be
    changed afterwards). ``max_nodes``: trees with more internal nodes are left to LightGBM;
    ``max_table``: largest lookup table (entries) of a group of trees; ``chunk_rows``: rows
    processed at a time (bounds the working memory: about 30 bytes x (features + 1) x rows).
    """

    def __init__(
        self,
        booster: lgb.Booster,
        max_nodes: int = 8,
        max_table: int = 4096,
        chunk_rows: int = 65536,
    ) -> None:
        if max_table < (1 << max_nodes):
            raise ValueError(
                f"max_table ({max_table}) must be at least 2**max_nodes ({1 << max_nodes})"
            )
        self.booster = booster
        self.max_nodes, self.max_table, self.chunk_rows = max_nodes, max_table, chunk_rows
        # index arithmetic type: every index (and stride) of a group is below max_table
        self._small = np.uint16 if max_table <= 1 << 16 else np.uint32
        dump = booster.dump_model(num_iteration=-1)  # all trees, whatever best_iteration says
        self.n_features = int(dump["max_feature_idx"]) + 1
        self.feature_names = list(dump["feature_names"])
        self.n_classes = int(dump["num_tree_per_iteration"])
        self.n_iterations = len(dump["tree_info"]) // self.n_classes
        linear = any(_is_linear(t["tree_structure"]) for t in dump["tree_info"])
        exact = _model_thresholds(booster.model_to_string(num_iteration=-1))
        if len(exact) != len(dump["tree_info"]):
            raise ValueError("the model text and the dump disagree on the number of trees")
        self._trees = [_parse_tree(t, ts) for t, ts in zip(dump["tree_info"], exact, strict=True)]
        # the category cells: codes 0..K-1 of every category any split names; K = anything else
        top: dict[int, int] = {}
        for tree in self._trees:
            for n in tree.nodes:
                if n.categorical:
                    top[n.feature] = max(top.get(n.feature, -1), max(n.categories, default=-1))
        self._radix = {f: k + 2 for f, k in top.items()}
        for tree in self._trees:
            tree.tabled = not linear and self._can_table(tree)
            if tree.tabled:
                tree.expected_value = _expected_value(tree)
                tree.features = sorted({n.feature for n in tree.nodes})
                tree.table = _pattern_table(tree)
                components = _tree_components(tree, self._radix, max_table)
                if components is None:
                    tree.tabled = False
                else:
                    tree.components = components
        self._plans: dict[tuple[int, int], _Plan] = {}

    def _can_table(self, tree: _Tree) -> bool:
        if len(tree.nodes) > self.max_nodes:
            return False
        if any(n.count <= 0 or min(n.child_counts) <= 0 for n in tree.nodes):
            return False  # LightGBM would divide by zero: let it produce whatever it produces
        return True

    @property
    def tabled_trees(self) -> int:
        """How many of the booster's trees are computed from tables (the rest by LightGBM)."""
        return sum(t.tabled for t in self._trees)

    def _iterations(self, start_iteration: int, num_iteration: int | None) -> tuple[int, int]:
        """The iterations ``Booster.predict`` would use (``GBDT::InitPredict``)."""
        if num_iteration is None:
            num_iteration = self.booster.best_iteration if start_iteration <= 0 else -1
        total = self.n_iterations
        start = min(max(start_iteration, 0), total)
        count = min(num_iteration, total - start) if num_iteration > 0 else total - start
        return start, start + count

    def _plan(self, start: int, stop: int) -> _Plan:
        key = (start, stop)
        if key in self._plans:
            return self._plans[key]
        k = self.n_classes
        tabled_iters = [
            it for it in range(start, stop)
            if all(self._trees[it * k + c].tabled for c in range(k))
        ]  # fmt: skip
        fallback: list[tuple[int, int]] = []
        tabled = set(tabled_iters)
        for it in range(start, stop):
            if it in tabled:
                continue
            if fallback and fallback[-1][0] + fallback[-1][1] == it:
                fallback[-1] = (fallback[-1][0], fallback[-1][1] + 1)
            else:
                fallback.append((it, 1))
        trees = [self._trees[it * k + c] for it in tabled_iters for c in range(k)]
        expected = np.zeros(k)
        for tree in trees:  # tree order, as GBDT::PredictContrib adds them
            expected[tree.index % k] += tree.expected_value
        groups = _plan_groups([t for t in trees if t.nodes], k, self._radix, self.max_table)
        for g in groups:
            _finish(g, self.n_features, self._radix)
        plan = _Plan(
            groups=groups,
            fallback=fallback,
            expected=expected,
            features=sorted({c[1] for g in groups for c, _, _ in g.bits if c[0] == "bit"}),
            cat_features=sorted(
                {f for g in groups for f, _ in g.cells}
                | {c[1] for g in groups for c, _, _ in g.bits if c[0] == "catbit"}
            ),
        )
        self._plans[key] = plan
        return plan

    def _matrix(self, x: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The matrix LightGBM predicts on: same conversion, same dtype."""
        if isinstance(x, pd.DataFrame):
            mat = _data_from_pandas(
                x,
                feature_name="auto",
                categorical_feature="auto",
                pandas_categorical=self.booster.pandas_categorical,
            )[0]
        elif isinstance(x, np.ndarray):
            if x.ndim != 2:
                raise ValueError("Input numpy.ndarray must be 2 dimensional")
            # Booster.predict (__pred_for_np2d): float32/float64 as they are, anything else float32
            mat = x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)
        else:
            raise TypeError(f"contributions of a {type(x).__name__}: pass a DataFrame or ndarray")
        if mat.shape[1] != self.n_features:
            raise ValueError(
                f"The number of features in data ({mat.shape[1]}) is not the same as it was in "
                f"training data ({self.n_features})."
            )
        return mat

    def contributions(
        self,
        x: pd.DataFrame | np.ndarray,
        num_iteration: int | None = None,
        start_iteration: int = 0,
    ) -> np.ndarray:
        """SHAP values as ``booster.predict(x, pred_contrib=True, ...)``: n_rows x
        n_classes * (n_features + 1), each class block ending with its expected value.

        ``num_iteration`` / ``start_iteration`` as in ``Booster.predict`` (None: the best
        iteration if there is one).
        """
        start, stop = self._iterations(start_iteration, num_iteration)
        plan = self._plan(start, stop)
        width = self.n_classes * (self.n_features + 1)
        if len(x) == 0:
            return np.zeros((0, width))
        if not plan.groups and plan.fallback == [(start, stop - start)]:  # nothing tabled
            return self.booster.predict(
                x, start_iteration=start, num_iteration=stop - start, pred_contrib=True
            )
        out = np.empty((len(x), width))
        for lo in range(0, len(x), self.chunk_rows):
            hi = min(lo + self.chunk_rows, len(x))
            part = x.iloc[lo:hi] if isinstance(x, pd.DataFrame) else x[lo:hi]
            out[lo:hi] = self._chunk(self._matrix(part), plan).T
        return out

    def _chunk(self, mat: np.ndarray, plan: _Plan) -> np.ndarray:
        """Contributions of one chunk, transposed: (n_classes * (n_features + 1), rows)."""
        n = mat.shape[0]
        # Rows padded by 64 doubles: a power-of-two row stride (65,536 rows) maps every row to the
        # same cache sets, which makes the final transposition ~4x slower.
        acc = np.zeros((self.n_classes * (self.n_features + 1), n + 64))[:, :n]
        for c in range(self.n_classes):
            acc[c * (self.n_features + 1) + self.n_features] = plan.expected[c]
        cols: dict[int, np.ndarray] = {}
        for f in sorted(set(plan.features) | set(plan.cat_features)):
            col = np.array(mat[:, f], dtype=np.float64)  # contiguous copy
            # dense rows: |x| <= kZeroThreshold is read as 0 (RowPairFunctionFromDenseMatrix)
            col[np.abs(col) <= K_ZERO_THRESHOLD] = 0.0
            cols[f] = col
        cells: dict[int, np.ndarray] = {}
        for f in plan.cat_features:
            col, other = cols[f], self._radix[f] - 1
            # CategoricalDecision: NaN and int(x) < 0 (x <= -1) go right; codes beyond every
            # split's set go right: all of those are the "other" cell
            valid = (col > -1.0) & (col < other)
            cells[f] = np.where(valid, col, other).astype(self._small)  # C cast: toward zero
        work = _Workspace(n, self._small)
        gathered = np.empty(n)
        for g in plan.groups:
            idx = _index(g, cols, cells, work)
            for row, values in zip(g.rows, g.table, strict=True):
                np.take(values, idx, out=gathered, mode="clip")  # in range by construction;
                # mode="raise" (the default) would buffer the output
                np.add(acc[row], gathered, out=acc[row])
        for s, count in plan.fallback:
            acc += self.booster.predict(
                mat, start_iteration=s, num_iteration=count, pred_contrib=True
            ).T
        return acc


class _Workspace:
    """Per-chunk scratch arrays (reused by every group: no allocation per group)."""

    def __init__(self, n: int, small: type) -> None:
        self.idx = np.empty(n, dtype=np.intp)
        self.total, self.cell = np.empty(n, dtype=small), np.empty(n, dtype=small)
        self.code8, self.scratch8 = np.empty(n, dtype=np.uint8), np.empty(n, dtype=np.uint8)
        self.code, self.scratch = np.empty(n, dtype=small), np.empty(n, dtype=small)
        self.bit, self.bit2 = np.empty(n, dtype=bool), np.empty(n, dtype=bool)


def _index(
    g: _Group, cols: dict[int, np.ndarray], cells: dict[int, np.ndarray], w: _Workspace
) -> np.ndarray:
    """The group's table index of every row of the chunk (in ``w.idx``).

    Built in the narrowest integer types (uint8 bits, uint16 / uint32 cells: a few microseconds
    per operation on 65,536 rows against ~17 for intp) and widened once for ``np.take``.
    """
    bit = w.bit
    code, scratch = (w.code8, w.scratch8) if len(g.bits) <= 8 else (w.code, w.scratch)
    for c, shift, lut in g.bits:
        if lut is None:
            _, f, op, t = c
            x = cols[f]
            if op in (_LE, _LE_NZ):
                np.less_equal(x, t, out=bit)
            else:
                np.greater(x, t, out=bit)
            if op in (_LE_NZ, _GT_NZ):  # Zero missing type: 0 goes to the default side
                np.not_equal(x, 0.0, out=w.bit2)
                np.logical_and(bit, w.bit2, out=bit)
        else:  # one bit per categorical split: its category set as a lookup over the cells
            np.take(lut, cells[c[1]], out=bit, mode="clip")
        if shift == 0:
            np.copyto(code, bit, casting="unsafe")
        else:
            # bit * 2**shift: a multiply is several times faster than np.left_shift here
            np.multiply(bit.view(np.uint8), 1 << shift, out=scratch, dtype=scratch.dtype)
            np.bitwise_or(code, scratch, out=code)
    if not g.cells:
        np.copyto(w.idx, code, casting="unsafe")
        return w.idx
    total = w.total
    f, stride = g.cells[0]
    np.multiply(cells[f], stride, out=total)
    for f, stride in g.cells[1:]:
        np.multiply(cells[f], stride, out=w.cell)
        np.add(total, w.cell, out=total)
    if g.bits:
        np.add(total, code, out=total, casting="unsafe")
    np.copyto(w.idx, total, casting="unsafe")
    return w.idx


def _is_linear(node: dict[str, Any]) -> bool:
    """Whether a dumped tree has linear leaves (``leaf_const``): pred_contrib rejects those."""
    if "split_index" not in node:
        return "leaf_const" in node
    return _is_linear(node["left_child"]) or _is_linear(node["right_child"])
