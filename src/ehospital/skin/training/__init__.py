"""Training the acne model: data, network, training loop, ONNX export and evaluation."""
