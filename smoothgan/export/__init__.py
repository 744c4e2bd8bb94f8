"""Export of a bundle's networks: ONNX graphs (:mod:`smoothgan.export.onnx`) and TensorRT engines
(:mod:`smoothgan.export.tensorrt`, imported on its own: it loads TensorRT)."""

from smoothgan.export.onnx import OnnxArtifact, export_onnx, onnx_path, read_metadata, required_networks

__all__ = ["OnnxArtifact", "export_onnx", "onnx_path", "read_metadata", "required_networks"]
