#!/usr/bin/env python3
"""Writes docs/latent-study.md and its plots from bench/latent_study.sh's results.

    python3 bench/latent_study.py RESULTS_DIR docs/latent-study.md --device cpu --epochs 10 ...

Every number in the page comes from RESULTS_DIR/results.jsonl (one JSON object per variant), and
every sentence under "What the numbers show" is computed from them, so the page says only what its
table shows. Plots need matplotlib (Debian's python3-matplotlib).
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(results_dir):
    with open(os.path.join(results_dir, "results.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def git_commit():
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def metrics(r):
    e, qp, qa = r["eval"], r["quality_prior"], r["quality_aggregate"]
    return {
        "nll": e["iwae_nll"], "elbo": e["neg_elbo"], "kl": e["kl"], "recon": e["recon"],
        "au": e["active_units"], "latent": len(e.get("kl_per_dim") or []) or r["params"]["posterior"]["latent"],
        "mi": e.get("mutual_info", float("nan")), "fd_prior": qp["frechet_distance"],
        "fd_agg": qa["frechet_distance"], "acc": qp.get("conditional_accuracy"),
        "train_s": r["train_seconds"], "sps": qp["samples_per_s"], "floor": qp["frechet_distance_train_vs_test"],
    }


def scatter(rows, x, y, xlabel, ylabel, title, path):
    fig, ax = plt.subplots(figsize=(7, 5))
    for r in rows:
        m = metrics(r)
        ax.scatter(m[x], m[y], s=25)
        ax.annotate(r["variant"], (m[x], m[y]), fontsize=8, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bars(rows, path):
    names = [r["variant"] for r in rows]
    prior = [metrics(r)["fd_prior"] for r in rows]
    agg = [metrics(r)["fd_agg"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    xs = range(len(rows))
    ax.bar([i - 0.2 for i in xs], prior, width=0.4, label="prior samples")
    ax.bar([i + 0.2 for i in xs], agg, width=0.4, label="aggregate-posterior samples")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("Fréchet distance (classifier features; lower is better)")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latent_size_plot(rows, path):
    sized = sorted((metrics(r)["latent"], r) for r in rows if r["variant"] in ("latent2", "latent8", "plain", "latent64"))
    if len(sized) < 2:
        return False
    fig, ax1 = plt.subplots(figsize=(6, 4))
    ls = [s for s, _ in sized]
    ax1.plot(ls, [metrics(r)["nll"] for _, r in sized], "o-", label="-log p(x)")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("latent size")
    ax1.set_ylabel("-log p(x), nats")
    ax2 = ax1.twinx()
    ax2.plot(ls, [metrics(r)["fd_prior"] for _, r in sized], "s--", color="tab:orange", label="FD, prior samples")
    ax2.plot(ls, [metrics(r)["fd_agg"] for _, r in sized], "^--", color="tab:green", label="FD, aggregate samples")
    ax2.set_ylabel("Fréchet distance")
    fig.legend(loc="upper center", fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def findings(rows):
    by = {r["variant"]: metrics(r) for r in rows}
    out = []
    # The conditional row's likelihood is of p(x | y): not ranked with the others.
    unconditional = [r for r in rows if r["variant"] != "conditional"]
    best = min(unconditional, key=lambda r: metrics(r)["nll"])
    worst = max(unconditional, key=lambda r: metrics(r)["nll"])
    if "plain" in by:
        p = by["plain"]
        out.append(f"Lowest test -log p(x): **{best['variant']}** at {metrics(best)['nll']:.2f} nats, "
                   f"{p['nll'] - metrics(best)['nll']:.2f} nats below the plain VAE's {p['nll']:.2f}; highest: "
                   f"{worst['variant']} at {metrics(worst)['nll']:.2f}. Ranking: " +
                   " < ".join(f"{r['variant']} {metrics(r)['nll']:.2f}" for r in sorted(unconditional, key=lambda r: metrics(r)["nll"])) +
                   " (the conditional row, -log p(x | y), is a different quantity).")
        best_fd = min(rows, key=lambda r: metrics(r)["fd_agg"])
        best_fd_prior = min(rows, key=lambda r: metrics(r)["fd_prior"])
        out.append(f"Lowest Fréchet distance: {best_fd['variant']} with aggregate samples ({metrics(best_fd)['fd_agg']:.2f}); "
                   f"with prior samples {best_fd_prior['variant']} ({metrics(best_fd_prior)['fd_prior']:.2f}).")
        lower = [r["variant"] for r in rows if metrics(r)["fd_agg"] < metrics(r)["fd_prior"]]
        out.append(f"Aggregate-posterior sampling gives a lower Fréchet distance than prior sampling in "
                   f"{len(lower)} of {len(rows)} variants; for the plain VAE {p['fd_agg']:.2f} against "
                   f"{p['fd_prior']:.2f} ({p['fd_prior'] / max(p['fd_agg'], 1e-12):.1f}x lower). Real training "
                   f"images reach {p['floor']:.3f} against the test images.")
        higher = [r["variant"] for r in rows if metrics(r)["fd_agg"] >= metrics(r)["fd_prior"]]
        if higher:
            out.append("Where it does not: " + ", ".join(
                f"{v} ({by[v]['fd_agg']:.2f} vs {by[v]['fd_prior']:.2f})" for v in higher) + ".")
    sizes = [v for v in ("latent2", "latent8", "plain", "latent64") if v in by]
    if len(sizes) > 1:
        out.append("Latent size " + ", ".join(
            f"{by[v]['latent']}: -log p(x) {by[v]['nll']:.2f}, active units {by[v]['au']}, FD prior/aggregate "
            f"{by[v]['fd_prior']:.1f}/{by[v]['fd_agg']:.1f}" for v in sizes) + ".")
    betas = [v for v in ("beta0.5", "plain", "beta4") if v in by]
    if len(betas) > 1:
        out.append("β " + ", ".join(
            f"{ {'beta0.5': '0.5', 'plain': '1', 'beta4': '4'}[v] }: KL {by[v]['kl']:.2f}, reconstruction "
            f"{by[v]['recon']:.2f}, active units {by[v]['au']}, -log p(x) {by[v]['nll']:.2f}" for v in betas) + ".")
    if "conditional" in by and by["conditional"]["acc"] is not None:
        out.append(f"The conditional VAE's samples are classified as the asked label {100 * by['conditional']['acc']:.1f}% "
                   f"of the time (the classifier scores {100 * rows[0]['quality_prior'].get('classifier_test_accuracy', float('nan')):.1f}% "
                   "on real test images).")
    if "plain" in by:
        base = by["plain"]["train_s"]
        costly = sorted(rows, key=lambda r: -metrics(r)["train_s"])[:3]
        out.append("Training time against the plain VAE: " + ", ".join(
            f"{r['variant']} {metrics(r)['train_s'] / base:.1f}x" for r in costly) + " (the three slowest).")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("page")
    for name in ("device", "cpu", "threads", "epochs", "k", "eval-limit", "fit-limit", "quality-n", "classifier-epochs"):
        ap.add_argument("--" + name, default="")
    a = ap.parse_args()
    rows = load(a.results)
    assets = os.path.join(os.path.dirname(a.page), "latent-study")
    os.makedirs(assets, exist_ok=True)
    for r in rows:
        for kind in ("samples", "latent"):
            src = os.path.join(a.results, f"{kind}_{r['variant']}.png")
            if os.path.exists(src):
                shutil.copyfile(src, os.path.join(assets, f"{kind}_{r['variant']}.png"))
    scatter(rows, "kl", "recon", "KL (nats)", "reconstruction NLL (nats)", "Rate and distortion on the test set",
            os.path.join(assets, "rate_distortion.png"))
    scatter(rows, "train_s", "nll", "training time (s)", "-log p(x) (nats)", "Likelihood against training time",
            os.path.join(assets, "nll_vs_time.png"))
    scatter(rows, "nll", "fd_agg", "-log p(x) (nats)", "Fréchet distance, aggregate samples",
            "Likelihood against sample quality", os.path.join(assets, "nll_vs_fd.png"))
    bars(rows, os.path.join(assets, "frechet.png"))
    has_sizes = latent_size_plot(rows, os.path.join(assets, "latent_size.png"))

    k = a.k
    lines = [
        "# The latent-technique study",
        "",
        f"Generated by `bench/latent_study.sh` (then `bench/latent_study.py`) on {datetime.date.today().isoformat()} "
        f"at commit `{git_commit()}`.",
        "",
        f"**Budget and device.** Device `{a.device}` ({a.cpu}, {a.threads} threads). Every variant trained for "
        f"**{a.epochs} epochs** on Fashion-MNIST (60,000 images, dynamically binarised), batch 128, Adam 1e-3, seed 0, "
        "MLP encoder 512-256 with a mirrored decoder and latent 32 unless its flags say otherwise. "
        f"-log p(x) is the importance-weighted estimate with k = {k} on the first {a.eval_limit} test images "
        "(binarised once, the same for every row). This is a reduced CPU budget: the models are not converged, "
        "so differences of a nat or two between rows are within what longer training changes. The full budget "
        "(50+ epochs, k = 1000 or more) is for a GPU run: `bash bench/latent_study.sh build 0 50 1000 cuda`.",
        "",
        f"**Quality measure.** A classifier (MLP 784-256-128-10 on grey-level images, softmax cross-entropy, "
        f"{a.classifier_epochs} epochs, `vae classifier`) gives each image 128 penultimate-layer features. The "
        f"Fréchet distance (FD) between Gaussians fitted to the features of {a.quality_n} samples and of "
        f"{a.quality_n} test images is a domain-specific analogue of FID: it is **not FID** (no Inception network, "
        "other features, other scale) and its values compare only with each other. *Prior* samples z ~ p(z); "
        "*aggregate* samples z from a 10-component diagonal mixture fitted by EM to the posterior means of the "
        f"first {a.fit_limit} training images (ex-post density estimation). Decoded images are the Bernoulli means. "
        f"Samples/s counts sampling z and decoding {a.quality_n} images.",
        "",
        "| variant | flags | -log p(x) | -ELBO | KL | active units | I(x;z) | FD prior | FD aggregate | cond. accuracy | train s | samples/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = metrics(r)
        acc = f"{100 * m['acc']:.1f}%" if m["acc"] is not None else "—"
        lines.append(f"| {r['variant']} | `{r['flags']}` | {m['nll']:.2f} | {m['elbo']:.2f} | {m['kl']:.2f} | {m['au']} | "
                     f"{m['mi']:.2f} | {m['fd_prior']:.2f} | {m['fd_agg']:.2f} | {acc} | {m['train_s']:.0f} | {m['sps']:.0f} |")
    lines += ["", "Active units: Var_x E_q[z_u] > 0.01. I(x;z): the mutual information of the KL's split (1000 samples "
              "against all test posteriors, at most log N). The conditional row's likelihood and ELBO are of p(x | y).",
              "", "## What the numbers show", ""]
    lines += [f"- {s}" for s in findings(rows)]
    lines += ["", "## Trade-offs", "",
              "![rate and distortion](latent-study/rate_distortion.png)", "",
              "![Fréchet distance, prior and aggregate samples](latent-study/frechet.png)", "",
              "![likelihood against sample quality](latent-study/nll_vs_fd.png)", "",
              "![likelihood against training time](latent-study/nll_vs_time.png)", ""]
    if has_sizes:
        lines += ["![latent size](latent-study/latent_size.png)", ""]
    lines += ["## Samples and latent spaces", "",
              "Prior samples (32 per variant; the conditional model's grid has one row per class) and the test set's "
              "posterior means (3000 images; the two leading principal components above 2 dimensions), coloured by "
              "class.", "", "| variant | prior samples | posterior means |", "|---|---|---|"]
    for r in rows:
        v = r["variant"]
        lines.append(f"| {v} | ![samples {v}](latent-study/samples_{v}.png) | ![latent {v}](latent-study/latent_{v}.png) |")
    lines += ["", "Reproduce: `bash bench/latent_study.sh build 2 " + f"{a.epochs} {k} {a.device}`.", ""]
    with open(a.page, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {a.page} and {assets}/")


if __name__ == "__main__":
    main()
