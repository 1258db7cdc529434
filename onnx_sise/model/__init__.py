"""The explainable ONNX: its metadata schema (`info`), the shapes it must have
(`shapes`), reading model files and their external weights (`files`), the onnxruntime
sessions that run it (`session`), and the preparation of a plain ONNX classifier into
one (`preparation`, cached by `cache`)."""
