"""Measuring the maps: a synthetic world whose masks are exact (synthetic_world), the paper's segmentation metrics
(segmentation_metrics) and an evaluation of the pack on a folder of pictures with masks (evaluate).

synthetic_world and segmentation_metrics need only numpy and pillow; evaluate needs ComfyUI. See docs/quality.md.
"""
