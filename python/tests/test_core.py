"""The vae package on numpy arrays: a round trip, a small training run, a saved model, bad input.

Run with the extension built (cmake -DVAE_BUILD_PYTHON=ON) and PYTHONPATH=build/python:
    PYTHONPATH=build/python python3 -m pytest python/tests
"""
import gc
import gzip
import os
import struct

import numpy as np
import pytest

import vae

DATA = os.environ.get("VAE_TEST_DATA_DIR", "/usr/share/datasets/fashion-mnist")


def idx(name):
    with gzip.open(os.path.join(DATA, name)) as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols)
    return np.frombuffer(data, np.uint8, offset=8)


@pytest.fixture(scope="module")
def fashion():
    if not os.path.exists(os.path.join(DATA, "train-images-idx3-ubyte.gz")):
        pytest.skip("Fashion-MNIST not found; apt-get install dataset-fashion-mnist")
    return idx("train-images-idx3-ubyte.gz")[:2000], idx("t10k-images-idx3-ubyte.gz")[:300], idx("t10k-labels-idx1-ubyte.gz")[:300]


def small_model(**extra):
    return vae.Model({"encoder": {"type": "mlp", "hidden": [32]}, "posterior": {"type": "gaussian", "latent": 4}, **extra},
                     device="cpu", seed=3)


def test_round_trip_shapes_and_dtypes(fashion):
    _, test, _ = fashion
    m = small_model()
    mu, logvar = m.encode(test[:10])
    assert mu.shape == (10, 4) and mu.dtype == np.float32 and logvar.shape == (10, 4)
    images = m.decode(mu)
    assert images.shape == (10, 1, 28, 28) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    # uint8 and float32 inputs of the same pixels encode alike; a non-contiguous view is copied.
    assert np.allclose(m.encode(test[:10].astype(np.float32) / 255)[0], mu, atol=1e-6)
    assert np.array_equal(m.encode(test[:20][::2])[0], m.encode(np.ascontiguousarray(test[:20][::2]))[0])
    assert m.sample(6, temperature=0.5).shape == (6, 1, 28, 28)
    assert m.reconstruct(test[:3]).shape == (3, 1, 28, 28)
    # Samples come back in the decoded tensor's own memory: the array outlives the model, owns
    # its data (writable, C-contiguous) and holds what a second draw with the seed gives.
    kept, again = m.sample(5, seed=7), m.sample(5, seed=7)
    del m
    gc.collect()
    assert kept.flags["C_CONTIGUOUS"] and kept.flags["WRITEABLE"]
    assert np.array_equal(kept, again) and 0.0 <= kept.min() and kept.max() <= 1.0


def test_training_lowers_the_loss_and_saved_models_agree(fashion, tmp_path):
    train, test, _ = fashion
    m = small_model()
    steps = []
    history = vae.train(m, train, test_x=test, epochs=2, batch=100, threads=2, progress=False, callback=steps.append)
    assert len(history) == 2 and history[1]["test_neg_elbo"] < history[0]["test_neg_elbo"]
    assert steps and steps[-1]["epoch"] == 2
    path = str(tmp_path / "m.safetensors")
    m.save(path)
    again = vae.load(path, device="cpu")
    assert np.array_equal(again.encode(test[:5])[0], m.encode(test[:5])[0])
    r = vae.evaluate(again, test, k=5)
    assert r["count"] == 300 and r["iwae_nll"] <= r["neg_elbo"] + 1.0
    # The estimate carries its spread and its protocol.
    assert r["iwae_stderr"] > 0 and 1.0 <= r["ess_min"] <= r["ess_mean"] <= 5.0
    assert r["protocol"]["k"] == 5 and r["protocol"]["test_images"] == 300
    assert r["protocol"]["binarization"] == "static" and r["protocol"]["model_config_hash"].startswith("sha256:")
    # From the data set itself: its content hash, as a run records it and the CLI reports it.
    d = vae.load_data(DATA)
    whole = vae.evaluate(again, d, k=2, limit=20)
    assert whole["protocol"]["data_hash"] == d["hash"] and whole["protocol"]["test_split"] == "the source's own test split"


def test_validation_split_and_early_stopping(fashion):
    train, test, _ = fashion
    m = small_model()
    history = vae.train(m, train, test_x=test, epochs=30, batch=100, lr=0.03, threads=1, progress=False,
                        validation_fraction=0.2, early_stopping=2)
    assert "validation_neg_elbo" in history[0]
    best = min(range(len(history)), key=lambda i: history[i]["validation_neg_elbo"])
    assert len(history) == best + 1 + 2, "stops 2 epochs after the best validation epoch"
    with pytest.raises(vae.Error, match="validation set"):
        vae.train(small_model(), train, test_x=test, epochs=1, threads=1, progress=False, early_stopping=2)


def test_bad_input_raises_clear_errors(fashion):
    _, test, _ = fashion
    m = small_model()
    with pytest.raises(vae.ArgumentError, match="uint8 .* or float32"):
        m.encode(test[:3].astype(np.float64))
    with pytest.raises(ValueError, match=r"\[N, H, W\] or \[N, C, H, W\]"):
        m.encode(test[0])
    with pytest.raises(vae.ArgumentError, match="the model takes 1x28x28"):
        m.encode(test[:3, ::2, ::2])
    with pytest.raises(vae.ArgumentError, match=r"float32 \[N, 4\]"):
        m.decode(np.zeros((2, 3), np.float32))
    with pytest.raises(vae.Error, match="does not exist"):
        vae.load("/nonexistent/model.safetensors")
    with pytest.raises(vae.Error, match="not conditional"):
        m.sample(2, label=1)
    with pytest.raises(vae.Error, match="unknown"):
        vae.Model({"posterior": {"type": "gaussian", "latnet": 4}})


def test_run_folder_resumes_and_matches_the_cli(fashion, tmp_path):
    # vae.run keeps a run folder with the policy vae train uses (vae/run.hpp): one epoch, a refused
    # second start, a resume to two epochs, and the same bits as the CLI's two epochs in one go.
    config = {"model": {"encoder": {"type": "mlp", "hidden": [32]}, "posterior": {"type": "gaussian", "latent": 4}},
              "train": {"data": DATA, "epochs": 1, "batch": 100, "train_limit": 1000, "test_limit": 200,
                        "threads": 2, "seed": 3}}
    out = tmp_path / "run"
    epochs, refused = [], []

    def second_run(step):  # while the run lives, the folder is its own
        if not refused:
            with pytest.raises(vae.Error, match="is in use by another run"):
                vae.run(str(out), config, overwrite=True)
            refused.append(step)

    first = vae.run(str(out), config, callback=second_run, on_epoch=epochs.append)
    assert [m["epoch"] for m in first] == [1] and epochs == first and refused
    for name in ("config.json", "model.safetensors", "train_state.safetensors", "best.safetensors", "metrics.jsonl",
                 "samples.png"):
        assert (out / name).exists(), name
    with pytest.raises(vae.Error, match="already holds a run"):
        vae.run(str(out), config)
    with pytest.raises(vae.ArgumentError, match="own configuration"):
        vae.run(str(out), config, resume=True)
    more = vae.run(str(out), resume=True, epochs=2)
    assert [m["epoch"] for m in more] == [2]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    cli = os.environ.get("VAE_CLI")
    if cli:
        import json
        import subprocess
        config["train"]["epochs"] = 2
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        subprocess.run([cli, "train", "--config", str(path), "--out", str(tmp_path / "cli")], check=True,
                       stdout=subprocess.DEVNULL)
        # The same parameters bit for bit (the files differ in their run ids).
        ours = vae.load(str(out / "model.safetensors"), device="cpu").state_dict()
        theirs = vae.load(str(tmp_path / "cli" / "model.safetensors"), device="cpu").state_dict()
        assert all(np.array_equal(ours[k], theirs[k]) for k in ours)


def test_a_run_remembers_its_data(tmp_path):
    # The run records the data's absolute path and content hash; its checkpoints carry them
    # (Model.origin, kept by pickle); resume refuses other data and finds moved data through data=.
    import pickle
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(120, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "other.npy", x[::-1].copy())
    config = {"model": {"encoder": {"type": "mlp", "hidden": [16]}, "posterior": {"type": "gaussian", "latent": 2}},
              "train": {"data": str(tmp_path / "x.npy"), "test_fraction": 0.25, "epochs": 1, "batch": 30,
                        "threads": 1}}
    out = str(tmp_path / "run")
    vae.run(out, config)
    m = vae.load(out + "/model.safetensors", device="cpu")
    origin = m.origin
    assert origin["data"] == str(tmp_path / "x.npy") and origin["test_fraction"] == 0.25
    assert origin["data_hash"] == vae.load_data(str(tmp_path / "x.npy"), test_fraction=0.25)["hash"]
    assert pickle.loads(pickle.dumps(m)).origin == origin
    assert small_model().origin is None
    with pytest.raises(vae.Error, match="is not the data the run in"):
        vae.run(out, resume=True, epochs=2, data=str(tmp_path / "other.npy"))
    (tmp_path / "moved").mkdir()
    (tmp_path / "x.npy").rename(tmp_path / "moved" / "x.npy")
    with pytest.raises(vae.Error, match="if it moved, pass --data"):
        vae.run(out, resume=True, epochs=2)
    assert [e["epoch"] for e in vae.run(out, resume=True, epochs=2, data=str(tmp_path / "moved" / "x.npy"))] == [2]
    assert vae.load(out + "/model.safetensors", device="cpu").origin["data"] == str(tmp_path / "moved" / "x.npy")


def test_a_diverged_run_leaves_the_last_good_parameters(fashion):
    # lr 10 blows the run up in its first epoch: vae.train raises, and the model keeps the
    # parameters it had before (the last epoch's end), not the blown-up ones.
    train, test, _ = fashion
    m = small_model()
    before = m.encode(test[:5])[0]
    with pytest.raises(vae.Error, match="training diverged"):
        vae.train(m, train, test_x=test, epochs=2, lr=10.0, batch=100, threads=1, progress=False)
    assert np.array_equal(m.encode(test[:5])[0], before)


def test_pytorch_habits_state_dict_pickle_repr_and_callbacks(fashion, capsys):
    import copy
    import pickle
    train, test, _ = fashion
    m = small_model()
    assert "latent 4" in repr(m) and "parameters, cpu" in repr(m)
    sd = m.state_dict()
    assert "encoder.0.weight" in sd and sum(v.size for v in sd.values()) == m.parameter_count
    assert all(v.dtype == np.float32 for v in sd.values())
    twin = small_model()
    twin.load_state_dict({k: v + 0.01 for k, v in sd.items()})
    assert not np.array_equal(twin.encode(test[:3])[0], m.encode(test[:3])[0])
    twin.load_state_dict(sd)
    assert np.array_equal(twin.encode(test[:3])[0], m.encode(test[:3])[0])
    name = next(iter(sd))
    with pytest.raises(vae.ArgumentError, match="lacks"):
        twin.load_state_dict({k: v for k, v in sd.items() if k != name})
    with pytest.raises(vae.ArgumentError, match="shape"):
        twin.load_state_dict({**sd, name: np.zeros((1, 2, 3), np.float32)})
    with pytest.raises(vae.ArgumentError, match="not a parameter"):
        twin.load_state_dict({**sd, "bogus": np.zeros(1, np.float32)})
    for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert np.array_equal(other.encode(test[:3])[0], m.encode(test[:3])[0]) and other is not m
    # on_epoch gets each epoch's metrics; without tqdm a line per epoch is printed (progress=True);
    # without test data a warning says the test metrics are the training images'.
    epochs = []
    with pytest.warns(UserWarning, match="no test data"):
        vae.train(m, train[:500], epochs=2, batch=100, threads=1, on_epoch=epochs.append)
    assert [e["epoch"] for e in epochs] == [1, 2]
    try:
        import tqdm  # noqa: F401
    except ImportError:
        assert "epoch 2  train loss" in capsys.readouterr().out


def test_bad_calls_name_their_argument(fashion):
    _, test, labels = fashion
    m = small_model()
    with pytest.raises(vae.ArgumentError, match=r"sample: n must be in \[1, 1048576\], got 1000000000000"):
        m.sample(10**12)
    with pytest.raises(vae.ArgumentError, match="n must be an integer"):
        m.sample(2.5)
    z = np.zeros((2, 4), np.float32)
    z[1, 2] = np.nan
    with pytest.raises(vae.ArgumentError, match="codes must be finite; row 1"):
        m.decode(z)
    for call in (lambda: m.encode(test[:3], labels=labels[:3]), lambda: m.reconstruct(test[:3], labels=labels[:3]),
                 lambda: m.decode(np.zeros((3, 4), np.float32), labels=labels[:3])):
        with pytest.raises(vae.ArgumentError, match="not conditional, so it takes no labels"):
            call()


def test_one_model_from_several_threads(fashion):
    # Calls from several Python threads give each call's sequential bits; a call while another
    # thread trains the model is refused at once (vae.Error), and the training's callback may use it.
    import threading
    train, test, _ = fashion
    m = small_model()
    inputs = [test[i * 20:(i + 1) * 20 + i] for i in range(6)]
    alone = [(m.encode(x)[0], m.decode(m.encode(x)[0]), m.sample(9, seed=i)) for i, x in enumerate(inputs)]
    wrong = []

    def work(i):
        for _ in range(10):
            mu = m.encode(inputs[i])[0]
            got = (mu, m.decode(mu), m.sample(9, seed=i))
            if not all(np.array_equal(a, b) for a, b in zip(got, alone[i])):
                wrong.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []

    refused, own = [], []

    def other_thread():
        try:
            m.encode(test[:3])
        except vae.Error as e:
            refused.append(str(e))

    def on_step(step):
        if not refused:
            t = threading.Thread(target=other_thread)
            t.start()
            t.join()
            own.append(m.encode(test[:3])[0].shape)

    vae.train(m, train[:500], test_x=test, epochs=1, batch=50, threads=1, progress=False, on_step=on_step)
    assert refused and "being trained in another thread" in refused[0]
    assert own == [(3, 4)]
    with pytest.raises(vae.ArgumentError, match="not both"):
        vae.train(m, train[:100], test_x=test, epochs=1, on_step=print, callback=print)


def test_hierarchy_and_eight_bit_likelihoods(fashion):
    train, test, _ = fashion
    # Two levels: encode gives every level's posterior mean; a temperature per level, the top's draw
    # unchanged by the level below's.
    h = vae.Model({"encoder": {"type": "mlp", "hidden": [32]}, "posterior": {"type": "gaussian", "levels": [4, 3]}},
                  device="cpu", seed=3)
    mu, logvar = h.encode(test[:5])
    assert mu.shape == (5, 7) and logvar.shape == (5, 7)
    cold = h.sample(4, level_temperatures=[0.0, 0.0], seed=1)
    assert np.array_equal(cold[0], cold[3])
    assert h.sample(4, level_temperatures=[1.0, 0.0], seed=1).shape == (4, 1, 28, 28)
    # A discretized logistic: pixels drawn from it are 8-bit values; eval reports bits per dimension.
    d = vae.Model({"encoder": {"type": "mlp", "hidden": [32]}, "posterior": {"type": "gaussian", "latent": 4},
                   "likelihood": {"type": "dlogistic"}}, device="cpu", seed=3)
    drawn = d.sample(3, pixels="sample", seed=2)
    assert np.array_equal(np.round(drawn * 255) / 255, drawn)
    r = vae.evaluate(d, test[:50], k=5)
    assert r["likelihood"] == "dlogistic" and r["bpd"] == pytest.approx(r["iwae_nll"] / (784 * np.log(2)))
    with pytest.raises(vae.ArgumentError, match="pixels must be"):
        d.sample(2, pixels="median")
