"""The gradient sub-graph: forward, block outputs and d(score . weights)/d(block outputs)
as one traced function (DESIGN.md section 3).

`torch.onnx.export` cannot trace `torch.autograd.grad`, so the function is traced with
`make_fx` and a decomposition table that rewrites the backward ops into forward ops
ONNX has (a transposed convolution, a scatter-add, a broadcast), then exported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch._decomp import core_aten_decompositions
from torch.fx.experimental.proxy_tensor import make_fx

from onnx_sise.errors import ExportError

from .taps import TapCapture, TapSite

aten = torch.ops.aten


def score_head(logits: torch.Tensor, output_kind: str) -> torch.Tensor:
    """Psi of the papers: softmax of logits, the probabilities themselves, or sigmoid."""
    if output_kind == "logits":
        return torch.softmax(logits, dim=-1)
    if output_kind == "sigmoid":
        return torch.sigmoid(logits)
    return logits


def _convolution_backward(grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed,  # noqa: A002, ANN001
                          output_padding, groups, output_mask):
    if transposed:
        raise ExportError("the gradient export does not cover transposed convolutions (ConvTranspose)")
    grad_input = None
    if output_mask[0]:
        spatial = input.dim() - 2
        kernel = weight.shape[2:]
        extra = [
            input.shape[2 + d] - ((grad_output.shape[2 + d] - 1) * stride[d] - 2 * padding[d] + dilation[d] * (kernel[d] - 1) + 1)
            for d in range(spatial)
        ]
        grad_input = aten.convolution(grad_output, weight, None, stride, padding, dilation, True, extra, groups)
    return grad_input, None, None


def _max_pool2d_backward(grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, indices):  # noqa: A002, ANN001
    flat = input.new_zeros(input.shape).flatten(2)
    return flat.scatter_add(2, indices.flatten(2), grad_output.flatten(2)).view(input.shape)


def _adaptive_avg_pool2d_backward(grad_output, input):  # noqa: A002, ANN001
    out_h, out_w = grad_output.shape[-2:]
    in_h, in_w = input.shape[-2:]
    if in_h % out_h or in_w % out_w:
        raise ExportError(
            f"the gradient export covers adaptive average pooling only where the output ({out_h}x{out_w}) "
            f"divides the input ({in_h}x{in_w})"
        )
    kh, kw = in_h // out_h, in_w // out_w
    spread = grad_output.repeat_interleave(kh, dim=-2).repeat_interleave(kw, dim=-1)
    return spread / (kh * kw)


def decomposition_table() -> dict:
    table = dict(core_aten_decompositions())
    table[aten.convolution_backward.default] = _convolution_backward
    table[aten.max_pool2d_with_indices_backward.default] = _max_pool2d_backward
    table[aten._adaptive_avg_pool2d_backward.default] = _adaptive_avg_pool2d_backward
    return table


def explanation_function(
    model: nn.Module, sites: Sequence[TapSite], output_kind: str
) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]:
    """f(image, target_weights, logit_weights) -> (logits, scores, *activations, *gradients),
    where the gradients are of sum(scores * target_weights) + sum(logits * logit_weights):
    the score Psi for SISE (eq. 6 before the spatial sum), the raw class output for the
    Grad-CAM family."""
    capture = TapCapture(model, sites)

    def explain(image: torch.Tensor, target_weights: torch.Tensor, logit_weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with capture.capture() as taps:
            logits = model(image)
        scores = score_head(logits, output_kind)
        objective = (scores * target_weights).sum() + (logits * logit_weights).sum()
        gradients = torch.autograd.grad(objective, taps)
        return (logits, scores, *taps, *gradients)

    return explain


def trace_explanation(model: nn.Module, sites: Sequence[TapSite], output_kind: str,
                      image: torch.Tensor, num_classes: int) -> torch.fx.GraphModule:
    """Trace the explanation function with batch 1 into a graph of forward ATen ops."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    example = image.detach().clone().requires_grad_(True)
    weights = torch.zeros(1, num_classes)
    fn = explanation_function(model, sites, output_kind)
    traced = make_fx(fn, decomposition_table=decomposition_table())(example, weights, weights.clone())
    leftover = sorted({str(n.target) for n in traced.graph.nodes
                       if n.op == "call_function" and "backward" in str(n.target)})
    if leftover:
        raise ExportError(
            f"the gradient export does not cover {', '.join(leftover)}: the model uses a layer "
            "whose backward has no ONNX form here; supported families are VGG, ResNet and EfficientNet-Lite"
        )
    return traced
