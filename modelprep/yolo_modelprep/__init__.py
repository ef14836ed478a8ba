"""What Triton serves, decided from the model file itself.

A YoloService may name only `model.source`. The init container that fetches the file runs
`yolo-model-prepare`, which reads the file (tensor shapes and Ultralytics' ONNX metadata),
lets the fields written in the CR override what the file says, makes a fixed-batch export
batchable (checked at batch 2 with onnxruntime) and writes Triton's config.pbtxt.

- `facts`:   what a model file looks like (its tensors, layout, output format, class names)
             and the errors that say why a file cannot be served. No dependencies.
- `config`:  the config.pbtxt, from the operator's plan and the file's facts. No dependencies:
             the operator imports it too.
- `inspect`: an ONNX file -> facts (needs onnx).
- `batch`:   a fixed batch axis made dynamic, and the check at batch > 1 (onnx, onnxruntime).
- `cli`:     the init container's command.
"""
