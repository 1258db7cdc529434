"""The explainable ONNX: its metadata schema (`info`), the shapes it must have
(`shapes`), reading model files (`files`) and their external weights
(`external_data`, through the wire format in `protobuf`), opening them in onnxruntime
(`runtime`), the sessions that run it (`session`), and the preparation of a plain ONNX
classifier into one (`preparation`, cached by `cache`)."""
