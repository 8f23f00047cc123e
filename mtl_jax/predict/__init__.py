"""mtl-predict: a trained MODEL_DIR's predictions for new text (CLI: mtl_jax/predict/cli.py).

    from mtl_jax import predict
    predictor = predict.load('/tmp/run')          # best checkpoint, else the latest
    predictor.predict(['a great film', 'dull'])   # [{task: {'label', 'probability'} | {'score'} | ...}]
"""

from mtl_jax.predict.load import Predictor, load  # noqa: F401
