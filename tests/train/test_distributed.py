"""Two CPU processes under torchrun (gloo) train the same run and end with identical weights."""

import os
import subprocess
import sys
import textwrap

import torch

SCRIPT = textwrap.dedent('''
    import os, sys
    import torch
    from visattn.train import TrainConfig, train
    from visattn.train import classifier

    data, out = sys.argv[1], sys.argv[2]
    seen = {}
    real_evaluate = classifier.evaluate

    def evaluate(model, *args, **kwargs):
        seen["model"] = model
        return real_evaluate(model, *args, **kwargs)

    classifier.evaluate = evaluate
    config = TrainConfig(backbone="resnet20", attention="se", data_dir=data, epochs=2, batch_size=8, lr=0.05,
                         train_limit=64, val_limit=32, seed=1, device="cpu")
    result = train(config, out, progress=False)
    rank = int(os.environ["RANK"])
    torch.save(seen["model"].state_dict(), os.path.join(out, f"rank{rank}.pt"))
    print("world", result["world_size"])
''')


def test_two_process_ddp_ends_with_identical_weights(tiny_fmnist, tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(tiny_fmnist), str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "world 2" in proc.stdout
    w0 = torch.load(out / "rank0.pt", weights_only=True)
    w1 = torch.load(out / "rank1.pt", weights_only=True)
    for k in w0:
        if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # BN statistics are per process (no SyncBN), as in torchvision's reference recipe
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0, msg=k)
    assert (out / "result.json").exists() and len((out / "metrics.jsonl").read_text().splitlines()) == 2
