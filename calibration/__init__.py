"""Calibration data for int8 export (see calibration/int8.py): conditions drawn from a run's
training windows, noise from the sampler's standard normal, fed to onnxruntime's static quantiser
(OnnxCalibrationReader) and to ai-edge-quantizer (CalibrationSet.batches)."""
