"""Feature taps on a plain ONNX graph, one per convolutional block (docs/design.md section
5, "Plain graph"): a block ends where a step lowers the spatial resolution (along either
axis); its tap is the tensor handed to that step, walked back past pure data movement
and across an expanding 1x1 convolution (an inverted-residual block's first layer) to the
block output, and further back to the nearest tensor that every path from the image to
the output passes through (ResNet's strided 3x3 is bypassed by the shortcut, so the tap
is the block's sum). A global pool whose result gates a map of its own resolution
(squeeze-and-excitation) does not end a block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from onnx_sise.errors import ExportError

from .static_graph import StaticGraph

POOLS = ("MaxPool", "AveragePool", "LpPool")
WINDOWED = ("Conv", *POOLS)
GLOBAL_POOLS = ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
SPATIAL_REDUCTIONS = ("ReduceMean", "ReduceMax", "ReduceSum", "ReduceL2", "ReduceLogSumExp")
DATA_MOVEMENT = ("Transpose", "Pad", "Identity", "Cast", "Dropout")
POINTWISE = ("Relu", "Clip", "LeakyRelu", "PRelu", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh", "Elu", "Selu",
             "Softplus", "Gelu", "Mish", "BatchNormalization", "Identity", "Cast", "Dropout")
FLATTENING = ("Flatten", "Reshape")
ARITHMETIC = ("Add", "Sub", "Mul", "Div", "Max", "Min")
NCHW, NHWC = (0, 1, 2, 3), (0, 3, 1, 2)


@dataclass(frozen=True)
class FoundTap:
    """A tap tensor and the permutation that makes it (1, C, H, W)."""

    tensor: str
    to_nchw: tuple[int, ...] = (0, 1, 2, 3)

    def nchw_shape(self, graph: StaticGraph) -> tuple[int, ...]:
        shape = graph.shapes[self.tensor]
        return tuple(shape[i] for i in self.to_nchw)


class _Topology:
    def __init__(self, graph: StaticGraph, image: str) -> None:
        self.graph = graph
        self.producer = {o: n for n in graph.nodes for o in n.output if o}
        self.order = {o: k for k, n in enumerate(graph.nodes) for o in n.output if o}
        self.consumers: dict[str, list] = {}
        for node in graph.nodes:
            for i in node.input:
                self.consumers.setdefault(i, []).append(node)
        self.dominators = self._dominators(image, graph.outputs[0])

    def _dominators(self, image: str, output: str) -> set[str]:
        """Tensors every path from the image to the output passes through: in a
        topological order of the tensors on such paths, no edge jumps over them."""
        reach = {image}
        for node in self.graph.nodes:
            if any(i in reach for i in node.input):
                reach.update(o for o in node.output if o)
        back = {output}
        for node in reversed(self.graph.nodes):
            if any(o in back for o in node.output):
                back.update(i for i in node.input if i)
        on_path = reach & back
        order = [image] + [o for n in self.graph.nodes for o in n.output if o in on_path]
        position = {t: k for k, t in enumerate(order)}
        furthest = np.zeros(len(order), np.int64)  # furthest edge end starting at each position
        for node in self.graph.nodes:
            ends = [position[o] for o in node.output if o in position]
            for i in node.input:
                if i in position and ends:
                    furthest[position[i]] = max(furthest[position[i]], max(ends))
        dominators, reach_so_far = set(), -1
        for k, tensor in enumerate(order):
            if reach_so_far <= k:
                dominators.add(tensor)
            reach_so_far = max(reach_so_far, int(furthest[k]))
        return dominators


def _spatial(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(shape[2:])


def _halved(before: Sequence[int], after: Sequence[int]) -> bool:
    return any(2 * a <= b + 1 and a < b for a, b in zip(after, before)) and all(a <= b for a, b in zip(after, before))


def _is_gate(top: _Topology, pooled: str, map_shape: tuple[int, ...]) -> bool:
    """The pooled vector multiplies back into a map of the pooled map's shape
    (squeeze-and-excitation and similar gates, in either layout)."""
    size = int(np.prod(map_shape))
    frontier, seen = [pooled], {pooled}
    while frontier:
        for node in top.consumers.get(frontier.pop(), []):
            for out in node.output:
                shape = top.graph.shapes.get(out, ())
                if node.op_type in ("Mul", "Div") and sorted(shape) == sorted(map_shape):
                    return True
                if out not in seen and 2 * int(np.prod(shape)) <= size:
                    seen.add(out)
                    frontier.append(out)
    return False


def _block_ends(top: _Topology) -> list[tuple[str, tuple[int, ...], bool]]:
    """The tensor handed to each step that ends a block, in graph order, with the
    permutation that makes it NCHW and whether the step pools globally (the head)."""
    graph = top.graph
    ends: list[tuple[str, tuple[int, ...], bool]] = []
    for node in graph.nodes:
        x = node.input[0] if node.input else ""
        shape = graph.shapes.get(x, ())
        if len(shape) != 4 or not graph.is_float(x):
            continue
        out = graph.shapes.get(node.output[0], ())
        perm = NCHW
        if node.op_type in WINDOWED and len(out) == 4 and _halved(_spatial(shape), _spatial(out)):
            lowers = True
        elif node.op_type in GLOBAL_POOLS:
            lowers = max(_spatial(shape)) > 1
        elif node.op_type in SPATIAL_REDUCTIONS:
            lowers = _reduces_space(node, graph)
            perm = NHWC if _reduced_axes(node, graph) == [1, 2] else NCHW
        elif node.op_type in FLATTENING and len(out) == 2:
            # Maps flattened into the head unpooled end the last block; the layout of the
            # flattened tensor is unknown, so "unpooled" is: more than one axis besides the batch.
            source, _ = _walk_data_movement(top, x, NCHW)
            producer = top.producer.get(source)
            lowers = sum(d > 1 for d in graph.shapes[source][1:]) > 1 and (
                producer is None or producer.op_type not in WINDOWED + GLOBAL_POOLS)
        else:
            lowers = False
        if lowers and not _is_gate(top, node.output[0], shape):
            ends.append((x, perm, node.op_type not in WINDOWED))
    return ends


def _reduced_axes(node: object, graph: StaticGraph) -> list[int]:
    axes = graph.constant(node.input[1]) if len(node.input) > 1 and node.input[1] else next(
        (list(a.ints) for a in node.attribute if a.name == "axes"), None)
    return sorted(int(a) % 4 for a in np.asarray(axes).reshape(-1)) if axes is not None else []


def _reduces_space(node: object, graph: StaticGraph) -> bool:
    """A reduction of two axes of a 4-D map down to 1 that keeps one other axis (the
    channels): global pooling in NCHW or NHWC."""
    shape, out = graph.shapes[node.input[0]], graph.shapes[node.output[0]]
    kept = [d for d in out if d != 1]
    reduced = int(np.prod(shape)) // max(int(np.prod(out)), 1)
    return len(shape) == 4 and len(kept) == 1 and reduced > 1 and reduced * kept[0] == int(np.prod(shape[1:]))


def _walk_data_movement(top: _Topology, tensor: str, perm: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """Back from `tensor` past ops that only move data, with the permutation to NCHW."""
    while (node := top.producer.get(tensor)) is not None and node.op_type in DATA_MOVEMENT:
        source = node.input[0]
        if len(top.graph.shapes.get(source, ())) != 4:
            break
        if node.op_type == "Transpose":
            order = [int(i) for i in next(a.ints for a in node.attribute if a.name == "perm")]
            perm = tuple(order[p] for p in perm)
        tensor = source
    return tensor, perm


def _across_expansion(top: _Topology, tensor: str, perm: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """From the input of a downsampling step, back through activations and BatchNorm to an
    expanding 1x1 convolution, and to its input: the output of the block before."""
    current = tensor
    while (node := top.producer.get(current)) is not None:
        if node.op_type in POINTWISE:
            current = node.input[0]
            continue
        source = _activation_input(top, node)
        if source is not None:
            current = source
            continue
        if node.op_type == "Conv" and perm == (0, 1, 2, 3):
            weight = top.graph.shapes.get(node.input[1], ())
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            source = node.input[0]
            if len(weight) == 4 and weight[2:] == (1, 1) and group == 1 and weight[0] > top.graph.shapes[source][1] \
                    and _spatial(top.graph.shapes[source]) == _spatial(top.graph.shapes[current]) \
                    and source in top.dominators:
                return source, perm
        break
    return tensor, perm


def _activation_input(top: _Topology, node: object) -> str | None:
    """The input of an activation written as arithmetic (paddle's HardSwish: x * clip(x +
    3) / 6): an elementwise op whose operands are constants or computed from one of them
    within a few ops; None for anything else (a residual Add joins two tensors)."""
    if node.op_type not in ARITHMETIC:
        return None
    graph = top.graph
    shape = graph.shapes.get(node.output[0])
    operands = [i for i in node.input if i and i not in graph.constants]
    if not operands or any(graph.shapes.get(i) != shape for i in operands):
        return None
    earliest = min(operands, key=lambda t: top.order.get(t, -1))
    return earliest if all(o == earliest or _derived(top, o, earliest) for o in operands) else None


def _derived(top: _Topology, tensor: str, source: str, hops: int = 4) -> bool:
    frontier = [tensor]
    for _ in range(hops):
        frontier = [i for t in frontier if (n := top.producer.get(t)) is not None for i in n.input
                    if i and i not in top.graph.constants]
        if source in frontier:
            return True
    return False


def _nearest_dominator(top: _Topology, tensor: str, perm: tuple[int, ...]) -> tuple[str, tuple[int, ...]] | None:
    """`tensor`, or the nearest tensor above it (same layout) that dominates the output."""
    frontier, seen = [tensor], {tensor}
    while frontier:
        frontier.sort(key=lambda t: -top.order.get(t, -1))  # the latest (nearest) first
        current = frontier.pop(0)
        if current in top.dominators:
            return current, perm
        node = top.producer.get(current)
        if node is None:
            continue
        for i in node.input:
            if i and i not in seen and top.graph.is_float(i) and i not in top.graph.constants:
                seen.add(i)
                frontier.append(i)
    return None


def find_taps(graph: StaticGraph, image: str) -> list[FoundTap]:
    """One tap per resolution, the deepest block output at it, shallowest first
    (ExportError if the graph never downsamples)."""
    top = _Topology(graph, image)
    ends = _block_ends(top)
    if not ends:
        raise ExportError("the model never lowers the spatial resolution: no convolutional blocks to explain")
    taps: list[FoundTap] = []
    for end, end_perm, into_head in ends:
        tensor, perm = _walk_data_movement(top, end, end_perm)
        if not into_head:  # the head's own 1x1 convolution (Lite0's 320 -> 1280) is the last block's end
            tensor, perm = _across_expansion(top, tensor, perm)
        found = _nearest_dominator(top, tensor, perm)
        if found is None:
            continue
        tensor, perm = _walk_data_movement(top, *found)
        producer = top.producer.get(tensor)
        if tensor == image or tensor in graph.inputs or len(graph.shapes[tensor]) != 4 or (
                into_head and producer is not None and producer.op_type in POOLS):  # pooled straight into the head
            continue
        if tensor not in top.dominators:
            tensor, perm = found
        taps.append(FoundTap(tensor, perm))
    deepest: dict[tuple[int, ...], FoundTap] = {}
    for tap in sorted(taps, key=lambda t: top.order.get(t.tensor, -1)):
        deepest[_spatial(tap.nchw_shape(graph))] = tap
    if not deepest:
        raise ExportError("no feature tap found between the image and the classifier head")
    return sorted(deepest.values(), key=lambda t: top.order.get(t.tensor, -1))
