"""Model conversion: checkpoint -> ONNX (``onnx``), ONNX -> TensorRT engine (``tensorrt``). Imports core and models only."""
