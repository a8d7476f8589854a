"""Segmentation under torchrun (2 CPU processes): same weights on both ranks, mIoU from the rank-summed confusion."""

import json
import os
import subprocess
import sys
import textwrap

import torch

from visattn.train import TrainConfig
from visattn.train.distributed import DistInfo
from visattn.train.tasks import SegmentationTask

SCRIPT = textwrap.dedent('''
    import os, sys
    import torch
    from visattn.train import TrainConfig, train

    data, out = sys.argv[1], sys.argv[2]
    config = TrainConfig(task="segmentation", head="danet", backbone="tiny", dataset="fashion-scenes", data_dir=data,
                         scene_size=32, epochs=1, batch_size=4, lr=0.01, schedule="poly", train_limit=16,
                         val_limit=9, device="cpu")
    result = train(config, out, progress=False)
    print("world", result["world_size"])
''')


def test_two_process_segmentation(split_fmnist, tmp_path):
    script = tmp_path / "ddp_seg.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(split_fmnist), str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "world 2" in proc.stdout
    result = json.loads((out / "result.json").read_text())
    # one process evaluating the saved model on all 9 test scenes gets the same confusion matrix the two ranks
    # summed (rank 0 saw 5 scenes, rank 1 saw 4)
    config = TrainConfig.from_dict(result["config"])
    task = SegmentationTask()
    _, val = task.load_data(config)
    model = task.build_model(config)
    model.load_state_dict(torch.load(out / "checkpoints" / "epoch-001.pt", weights_only=True)["model"])
    single = task.evaluate(model, val, config, torch.device("cpu"), DistInfo())
    assert single["confusion"] == result["confusion"]
    assert sum(map(sum, single["confusion"])) == 9 * 32 * 32
    assert abs(single["miou"] - result["miou"]) < 1e-9
