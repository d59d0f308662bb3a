"""The straightforward predict script dltool predict replaces: everything in memory.

    python benchmarks/plain_pandas_predict.py RUN_FOLDER INPUT.csv OUTPUT.csv [BATCH_SIZE]

read_csv -> keras.saving.load_model(RUN_FOLDER/model.keras) -> model.predict(df.values)
-> DataFrame.to_csv. Uses the run's feature columns (preprocessing.json) when present.
Prints one JSON line: rows, seconds.
"""

import json
import sys
import time
from pathlib import Path

import keras
import pandas as pd

run, source, target = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
start = time.perf_counter()
df = pd.read_csv(source)
features = json.loads((run / "preprocessing.json").read_text()).get("feature_names") or list(df.columns)
model = keras.saving.load_model(run / "model.keras")
batch_size = int(sys.argv[4]) if len(sys.argv) > 4 else None  # None: Keras default (32)
predictions = model.predict(df[features].values, batch_size=batch_size, verbose=0)
pd.DataFrame(predictions, columns=[f"y{i}" for i in range(predictions.shape[1])]).to_csv(target, index_label="row")
print(json.dumps({"rows": len(df), "seconds": round(time.perf_counter() - start, 3)}))
