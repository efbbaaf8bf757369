"""Model frontends: each turns a trained model's file format into a braze Graph (ONNX first)."""
