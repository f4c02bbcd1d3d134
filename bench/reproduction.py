#!/usr/bin/python3
"""The reproduction's table, record and curves from its run folders (docs/reproduction.md).

Each --row NAME RUN_DIR EVAL_JSON PAPER names a run folder of `vae train` (config.json, metrics.jsonl),
the `vae eval --checkpoint RUN_DIR/best.safetensors --k 5000 --json` output of its best model (or
"-" while the run is still training) and the paper's -log p(x) (or "-"). Writes:
  --json FILE  {"rows": [{name, neg_log_px, k, stderr, epochs, best_epoch, seed, ...}], ...}
  --plot FILE  validation (solid) and test (dashed) -ELBO per epoch, each run's best epoch marked
and prints the markdown table. Runs with Debian's python3 (matplotlib from python3-matplotlib).
"""
import argparse
import json
import os
import struct
import sys


def read_metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def checkpoint_step(path):
    """The training step a checkpoint holds (its safetensors metadata's vae_step)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return int(json.loads(f.read(n))["__metadata__"]["vae_step"])


def wall_seconds(run_dir):
    """Training wall time: the segments a run's .times file records (start and end epochs, one pair a
    line, written by the command that started or resumed it), with an unfinished last segment up to
    the last metrics line."""
    path = run_dir.rstrip("/") + ".times"
    if not os.path.exists(path):
        return None
    total, last_metrics = 0.0, os.path.getmtime(os.path.join(run_dir, "metrics.jsonl"))
    for line in open(path):
        parts = line.split()
        if not parts:
            continue
        start = float(parts[0])
        end = float(parts[1]) if len(parts) > 1 else last_metrics
        total += max(0.0, end - start)
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--row", nargs=4, action="append", metavar=("NAME", "RUN_DIR", "EVAL_JSON", "PAPER"), required=True)
    ap.add_argument("--json", help="the record to write")
    ap.add_argument("--plot", help="the curves' PNG to write")
    ap.add_argument("--date", default="")
    args = ap.parse_args()

    rows, curves = [], []
    for name, run_dir, eval_json, paper in args.row:
        config = json.load(open(os.path.join(run_dir, "config.json")))
        train = config["train"]
        metrics = read_metrics(run_dir)
        best = min(metrics, key=lambda m: m.get("validation_neg_elbo", m["test_neg_elbo"]))
        patience = train.get("early_stopping", 0)
        warmup = config.get("objective", {}).get("warmup_epochs", 0)
        stopped = patience > 0 and len(metrics) - max(best["epoch"], warmup) >= patience
        row = {
            "name": name,
            "run": os.path.basename(run_dir.rstrip("/")),
            "seed": train.get("seed", 0),
            "epochs": len(metrics),
            "best_epoch": best["epoch"],
            "early_stopped": stopped,
            "best_validation_neg_elbo": best.get("validation_neg_elbo"),
            "best_test_neg_elbo": best["test_neg_elbo"],
            "training_seconds": round(sum(m["seconds"] for m in metrics), 1),
            "wall_seconds": wall_seconds(run_dir),
            "paper_neg_log_px": None if paper == "-" else float(paper),
            "neg_log_px": None, "k": None, "stderr": None,
        }
        if eval_json != "-":
            e = json.load(open(eval_json))
            step = e["protocol"].get("checkpoint_step")
            if step is not None:  # the epoch evaluated: its step over the run's steps per epoch
                steps_per_epoch = checkpoint_step(os.path.join(run_dir, "model.safetensors")) / len(metrics)
                row["evaluated_epoch"] = int(round(step / steps_per_epoch))
            row.update({"neg_log_px": e["iwae_nll"], "k": e["k"], "stderr": e["iwae_stderr"],
                        "neg_elbo": e["neg_elbo"], "ess_mean": e["ess_mean"], "ess_min": e["ess_min"],
                        "eval_seconds": e["seconds"], "active_units": e["active_units"], "kl": e["kl"],
                        "protocol": e["protocol"]})
            if "kl_per_level" in e:
                row["kl_per_level"] = e["kl_per_level"]
                row["kl_active_units_per_level"] = e["kl_active_units_per_level"]
        rows.append(row)
        curves.append((name, metrics, best))

    print("| model | seed | -log p(x), k = 5000 (± se over images) | evaluated epoch | paper | epochs so far (best validation epoch) | training wall time |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ours = "%.2f ± %.2f" % (r["neg_log_px"], r["stderr"]) if r["neg_log_px"] is not None else "training"
        paper = "%.2f" % r["paper_neg_log_px"] if r["paper_neg_log_px"] is not None else "—"
        wall = "%.1f h" % (r["wall_seconds"] / 3600) if r["wall_seconds"] else "—"
        epochs = "%d (%d)%s" % (r["epochs"], r["best_epoch"], ", stopped early" if r["early_stopped"] else ", running")
        print("| %s | %d | %s | %s | %s | %s | %s |" % (r["name"], r["seed"], ours, r.get("evaluated_epoch", "—"), paper,
                                                    epochs, wall))

    if args.json:
        record = {"date": args.date, "protocol": "binarized Fashion-MNIST: dynamic binarization in training, the "
                  "test set's 10,000 images binarized once by a fixed seed, -log p(x) by importance sampling "
                  "with k samples from the best validation epoch's model", "rows": rows}
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
        for i, (name, metrics, best) in enumerate(curves):
            color = "C%d" % i
            epochs = [m["epoch"] for m in metrics]
            if "validation_neg_elbo" in metrics[0]:
                ax.plot(epochs, [m["validation_neg_elbo"] for m in metrics], color=color, lw=1, label=name + " (validation)")
            ax.plot(epochs, [m["test_neg_elbo"] for m in metrics], color=color, lw=0.8, ls="--", alpha=0.6)
            ax.plot([best["epoch"]], [best.get("validation_neg_elbo", best["test_neg_elbo"])], "o", color=color, ms=4)
        lows = [min(m.get("validation_neg_elbo", m["test_neg_elbo"]) for m in metrics) for _, metrics, _ in curves]
        ax.set_ylim(min(lows) - 2, min(lows) + 25)
        ax.set_xlabel("epoch")
        ax.set_ylabel("-ELBO (nats), validation solid, test dashed")
        ax.set_title("Fashion-MNIST (dynamically binarized): -ELBO per epoch; dot = best validation epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
